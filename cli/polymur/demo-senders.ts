// The demo's senders, as docker-compose.yml's `sender` and `remote-sender`:
// one long-lived TCP connection each (reconnecting if it closes), a few
// datapoints every second.
import net from "node:net";

/** A sender: `metrics(seq, now)` gives the lines written each second. */
export interface DemoSenderOptions {
  port: number;
  lines: (seq: number, now: number) => string[];
}

/** A running sender; stop() ends its connection. */
export interface DemoSender {
  /** Datapoints written so far. */
  readonly sent: number;
  stop(): void;
}

/** Writes `lines(seq, now)` to 127.0.0.1:`port` once a second until stopped. */
export function startSender(o: DemoSenderOptions): DemoSender {
  let socket: net.Socket | undefined;
  let seq = 0;
  let sent = 0;
  let stopped = false;
  const connect = (): void => {
    if (stopped) return;
    seq = 0; // a new connection starts the sequence again, as the compose sender does
    const s = net.connect(o.port, "127.0.0.1");
    s.on("error", () => s.destroy());
    s.once("close", () => {
      if (socket === s) socket = undefined;
      if (!stopped) setTimeout(connect, 1000).unref();
    });
    socket = s;
  };
  const tick = setInterval(() => {
    if (socket === undefined || socket.connecting) return;
    seq++;
    const lines = o.lines(seq, Math.floor(Date.now() / 1000));
    socket.write(`${lines.join("\n")}\n`);
    sent += lines.length;
  }, 1000);
  connect();
  return {
    get sent() {
      return sent;
    },
    stop() {
      stopped = true;
      clearInterval(tick);
      socket?.end();
    },
  };
}

/** Into the relay: a sequence, a gauge stamped by the relay (-1), a tagged series. */
export function centralLines(seq: number, now: number): string[] {
  const random = Math.floor(Math.random() * 100);
  return [
    `demo.sender.seq ${seq} ${now}`,
    `demo.sender.random ${random} -1`,
    `demo.sender.requests;env=demo;app=sender ${random % 10} ${now}`,
  ];
}

/** Into the proxy: stored as site-remote.demo.remote.* (the gateway's --key-prefix). */
export function remoteLines(seq: number, now: number): string[] {
  return [
    `demo.remote.seq ${seq} ${now}`,
    `demo.remote.random ${Math.floor(Math.random() * 100)} -1`,
  ];
}
