/**
 * How the spool names an operating-system error in its log lines and loss
 * details: "EIO: i/o error, read", the errno code first, so that an operator
 * can grep for it; the bare message when there is no code.
 */
export function errText(err: unknown): string {
  const e = err as NodeJS.ErrnoException;
  const message = String(e.message ?? err);
  // Node's own messages start with the code already ("ENOSPC: no space left…").
  return e.code === undefined || message.startsWith(`${e.code}:`)
    ? message
    : `${e.code}: ${message}`;
}
