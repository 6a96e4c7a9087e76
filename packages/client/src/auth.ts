// Who is calling, as request headers: a bearer token (tokens mode), or local mode's user name.

export function authHeaders(opts: { user?: string | undefined; token?: string | undefined }): Record<string, string> {
  return {
    ...(opts.user ? { 'x-trainyard-user': opts.user } : {}),
    ...(opts.token ? { authorization: `Bearer ${opts.token}` } : {}),
  };
}
