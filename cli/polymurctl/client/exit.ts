/**
 * polymurctl's exit statuses: 0 ok, 1 the control plane said no, 2 usage or
 * configuration, 3 the control plane could not be reached.
 */
export const EXIT = { ok: 0, refused: 1, usage: 2, unreachable: 3 } as const;
