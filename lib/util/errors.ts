/** An error caused by the user's input: the CLI prints its message as one line and exits 1. */
export class UserError extends Error {
  override name = "UserError";
}
