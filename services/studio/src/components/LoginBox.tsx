// The login box of a service in tokens mode: one field for the token an admin made with
// `trainyard admin token create`, kept for this tab's session only.
import { useState, type FormEvent } from 'react';
import { signIn } from '../session';

export function LoginBox({ notice, checking }: { notice: string | null; checking: boolean }) {
  const [token, setToken] = useState('');
  const submit = (e: FormEvent) => {
    e.preventDefault();
    if (token.trim()) signIn(token);
  };
  return (
    <main className="login">
      <form className="card login-card" onSubmit={submit} data-testid="login-box" aria-labelledby="login-title">
        <div className="card-head">
          <h2 id="login-title">Sign in to Trainyard</h2>
        </div>
        <div className="card-body">
          <p className="muted small">
            This service asks for a token. An admin makes one on the service's machine with{' '}
            <code>trainyard admin token create --user NAME</code>. It is kept for this browser tab only.
          </p>
          {notice ? (
            <div className="alert alert-error" role="alert" data-testid="login-notice">
              {notice}
            </div>
          ) : null}
          <div className="field">
            <label htmlFor="login-token">Token</label>
            <input
              id="login-token"
              type="password"
              autoComplete="off"
              spellCheck={false}
              placeholder="ty_…"
              value={token}
              onChange={(e) => setToken(e.target.value)}
              data-testid="login-token"
              autoFocus
            />
          </div>
          <button type="submit" className="btn btn-primary" disabled={!token.trim() || checking} data-testid="login-submit">
            {checking ? 'Checking…' : 'Sign in'}
          </button>
        </div>
      </form>
    </main>
  );
}
