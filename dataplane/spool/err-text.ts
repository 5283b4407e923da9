/**
 * How the spool names an operating-system error in its log lines and loss
 * details: "EIO: i/o error, read", the errno code first, so that an operator
 * can grep for it; the bare message when there is no code.
 */
export function errText(err: unknown): string {
  const e = err as NodeJS.ErrnoException;
  return e.code === undefined ? String(e.message ?? err) : `${e.code}: ${e.message}`;
}
