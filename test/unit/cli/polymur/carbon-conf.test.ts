import { describe, expect, it } from "vitest";
import {
  carbonDaemonSettings,
  carbonReceiverSettings,
} from "../../../../cli/polymur/carbon-conf.ts";

describe("carbon.conf lines", () => {
  it("puts the daemon's files in its directories", () => {
    const lines = carbonDaemonSettings({ storage: "/s", conf: "/c", log: "/l", pid: "/p" });
    expect(lines.slice(0, 4)).toEqual([
      "STORAGE_DIR = /s",
      "CONF_DIR = /c",
      "LOG_DIR = /l",
      "PID_DIR = /p",
    ]);
    expect(lines).toContain("ENABLE_UDP_LISTENER = False");
  });

  it("names the cache query port only when given", () => {
    expect(carbonReceiverSettings("127.0.0.1", { line: 1, pickle: 2 })).toEqual([
      "LINE_RECEIVER_INTERFACE = 127.0.0.1",
      "LINE_RECEIVER_PORT = 1",
      "PICKLE_RECEIVER_INTERFACE = 127.0.0.1",
      "PICKLE_RECEIVER_PORT = 2",
    ]);
    expect(carbonReceiverSettings("::1", { line: 1, pickle: 2, query: 3 }).slice(4)).toEqual([
      "CACHE_QUERY_INTERFACE = ::1",
      "CACHE_QUERY_PORT = 3",
    ]);
  });
});
