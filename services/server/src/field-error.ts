/** Bad input in one field of a request: the API answers BAD_REQUEST naming the field. */
export class FieldError extends Error {
  constructor(
    readonly field: string,
    message: string,
  ) {
    super(message);
    this.name = 'FieldError';
  }
}

/** The caller may not do this (an admin's operation): the API answers FORBIDDEN. */
export class ForbiddenError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ForbiddenError';
  }
}

/** A deployment the caller may not see, or that does not exist: the API answers NOT_FOUND. */
export class DeploymentNotFoundError extends Error {
  readonly code = 'DEPLOYMENT_NOT_FOUND' as const;
  constructor(readonly deploymentId: string) {
    super(`deployment ${deploymentId} was not found`);
    this.name = 'DeploymentNotFoundError';
  }
}

export function requireAdmin(actor: { admin: boolean; user: string }): void {
  if (!actor.admin) throw new ForbiddenError(`${actor.user} is not an admin; this needs an admin's token.`);
}
