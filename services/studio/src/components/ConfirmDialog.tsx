// A modal confirmation (native <dialog>): Escape or "Keep" closes it, the action button (or Enter
// in a field of it) confirms.
import { useEffect, useRef, type ReactNode } from 'react';

export function ConfirmDialog(props: {
  open: boolean;
  title: string;
  children?: ReactNode;
  confirmLabel: string;
  cancelLabel?: string;
  danger?: boolean;
  busy?: boolean;
  error?: string | null;
  onConfirm: () => void;
  onClose: () => void;
}) {
  const ref = useRef<HTMLDialogElement>(null);
  useEffect(() => {
    const d = ref.current;
    if (!d) return;
    if (props.open && !d.open) d.showModal();
    if (!props.open && d.open) d.close();
  }, [props.open]);
  return (
    <dialog
      ref={ref}
      className="dialog"
      data-testid="confirm-dialog"
      onClose={props.onClose}
      onClick={(e) => {
        // A click on the backdrop (the dialog element itself) closes it.
        if (e.target === ref.current && !props.busy) props.onClose();
      }}
    >
      {props.open ? (
        <form
          className="dialog-body"
          onSubmit={(e) => {
            e.preventDefault();
            if (!props.busy) props.onConfirm();
          }}
        >
          <h3>{props.title}</h3>
          {props.children}
          {props.error ? (
            <div className="alert alert-error" role="alert">
              {props.error}
            </div>
          ) : null}
          <div className="dialog-actions">
            <button type="button" className="btn" onClick={props.onClose} disabled={props.busy} data-testid="confirm-cancel">
              {props.cancelLabel ?? 'Keep'}
            </button>
            <button
              type="submit"
              className={`btn ${props.danger ? 'btn-danger' : 'btn-primary'}`}
              disabled={props.busy}
              data-testid="confirm-ok"
              autoFocus
            >
              {props.busy ? 'Working…' : props.confirmLabel}
            </button>
          </div>
        </form>
      ) : null}
    </dialog>
  );
}
