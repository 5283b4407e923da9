import type net from "node:net";

/**
 * A sender connection on its way to another process of the relay: the
 * socket (sent over the IPC channel with `child.send(message, socket)` or
 * `process.send`), the listener it came in on, and what its framer held of
 * an unfinished line or pickle message (bytes that, pushed into a new
 * framer, recreate its state; null: nothing).
 *
 * `fresh`: accepted just now and never read (the primary deals it to a
 * process); false: moved while open (a worker started or retired), its
 * reads so far counted where they were made.
 */
export interface Handoff {
  socket: net.Socket;
  listener: string;
  carry: Buffer | null;
  fresh: boolean;
}

/** What the IPC message that carries a Handoff's socket says. */
export interface HandoffMessage {
  t: "conn";
  listener: string;
  carry: Uint8Array | null;
  fresh: boolean;
}

/** The message to send along with `h.socket`. */
export function handoffMessage(h: Handoff): HandoffMessage {
  return { t: "conn", listener: h.listener, carry: h.carry, fresh: h.fresh };
}

/** The carry of a received HandoffMessage, as a Buffer (structured clone gives a Uint8Array). */
export function receivedCarry(m: HandoffMessage): Buffer | null {
  const c = m.carry;
  if (c === null || c.length === 0) return null;
  return Buffer.isBuffer(c) ? c : Buffer.from(c.buffer, c.byteOffset, c.length);
}

/** The libuv handle under a net.Socket: Node's own, reached here to stop reading at once. */
interface StreamHandle {
  reading: boolean;
  readStop(): number;
}

function handleOf(socket: net.Socket): StreamHandle | null {
  return (socket as unknown as { _handle: StreamHandle | null })._handle ?? null;
}

/** Whether `socket` can be sent to another process: open, with its descriptor. */
export function movable(socket: net.Socket): boolean {
  return !socket.destroyed && !socket.connecting && handleOf(socket) !== null;
}

/**
 * Stops reading from `socket` for good in this process, after every byte
 * the stream already read went to its "data" listeners (read() emits each
 * chunk it returns as "data"), so that nothing read is left behind when the
 * descriptor moves: what the kernel still holds is read by the next owner.
 *
 * pause() alone does not do it: the stream reads once more into its buffer
 * before it stops, and reading that buffer out asks the handle to read
 * again. So the handle is stopped before and after the buffer is drained
 * (Node's child_process docs warn of this loss for sockets sent while
 * readable: "pauseOnConnect").
 */
export function stopReading(socket: net.Socket): void {
  socket.pause();
  stopHandle(socket);
  while (socket.read() !== null) {
    // emitted as "data"
  }
  stopHandle(socket);
}

function stopHandle(socket: net.Socket): void {
  const h = handleOf(socket);
  if (h?.reading) {
    h.reading = false;
    h.readStop();
  }
}
