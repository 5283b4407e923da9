import { Readable, Writable } from "node:stream";
import type { CommandIO } from "../../../../cli/polymurctl/command.ts";

/** A CommandIO whose stdout and stderr are kept as text (`stdin` gives `input`). */
export interface CapturedIO {
  io: CommandIO;
  stdout(): string;
  stderr(): string;
}

export function captureIO(input = ""): CapturedIO {
  let out = "";
  let err = "";
  const sink = (append: (s: string) => void): Writable =>
    new Writable({
      write(chunk, _encoding, callback) {
        append(String(chunk));
        callback();
      },
    });
  return {
    io: {
      stdin: Readable.from(input === "" ? [] : [Buffer.from(input)]),
      stdout: sink((s) => {
        out += s;
      }),
      stderr: sink((s) => {
        err += s;
      }),
    },
    stdout: () => out,
    stderr: () => err,
  };
}
