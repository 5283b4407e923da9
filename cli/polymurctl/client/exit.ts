/**
 * polymurctl's exit statuses: 0 ok, 1 the control plane said no, 2 usage or
 * configuration, 3 the control plane could not be reached, 4 (`--wait`) the
 * change was made but some nodes did not apply it within the time given.
 */
export const EXIT = { ok: 0, refused: 1, usage: 2, unreachable: 3, notApplied: 4 } as const;
