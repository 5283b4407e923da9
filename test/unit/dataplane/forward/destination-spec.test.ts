import { describe, expect, it } from "vitest";
import { ErrorCode, PolymurError } from "../../../../common/errors.ts";
import {
  parseDestination,
  parseDestinationList,
} from "../../../../dataplane/forward/destination-spec.ts";

/** The PolymurError `f` throws (fails if it throws nothing, or something else). */
function thrown(f: () => unknown): PolymurError {
  try {
    f();
  } catch (err) {
    expect(err).toBeInstanceOf(PolymurError);
    return err as PolymurError;
  }
  throw new Error("expected a PolymurError, nothing was thrown");
}

describe("parseDestination", () => {
  it.each([
    // input, host, port, instance, id
    ["10.0.5.30:2003", "10.0.5.30", 2003, undefined, "10.0.5.30:2003"],
    [
      "carbon-a.example.com:2004",
      "carbon-a.example.com",
      2004,
      undefined,
      "carbon-a.example.com:2004",
    ],
    ["10.0.5.30:2003:a", "10.0.5.30", 2003, "a", "10.0.5.30:2003:a"],
    ["10.0.5.30:2003=a", "10.0.5.30", 2003, "a", "10.0.5.30:2003:a"],
    ["[::1]:2003", "::1", 2003, undefined, "[::1]:2003"],
    ["[::1]:2003:a", "::1", 2003, "a", "[::1]:2003:a"],
    ["[::1]:2003=a", "::1", 2003, "a", "[::1]:2003:a"],
    ["[2001:db8::7]:2103:cache-1", "2001:db8::7", 2103, "cache-1", "[2001:db8::7]:2103:cache-1"],
    ["[::ffff:10.0.0.1]:2003", "::ffff:10.0.0.1", 2003, undefined, "[::ffff:10.0.0.1]:2003"],
    ["h:1", "h", 1, undefined, "h:1"],
    ["h:65535", "h", 65535, undefined, "h:65535"],
    // Leading zeros are a number like any other; the id is canonical.
    ["h:02003", "h", 2003, undefined, "h:2003"],
  ])("%s", (input, host, port, instance, id) => {
    expect(parseDestination(input)).toEqual({
      host,
      port,
      instance,
      protocol: "plaintext",
      tls: false,
      spec: input,
      id,
    });
  });

  it.each([
    // input, host, port, instance, id
    ["pickle://10.0.5.30:2004", "10.0.5.30", 2004, undefined, "pickle://10.0.5.30:2004"],
    ["pickle://10.0.5.30:2004:a", "10.0.5.30", 2004, "a", "pickle://10.0.5.30:2004:a"],
    ["pickle://10.0.5.30:2004=a", "10.0.5.30", 2004, "a", "pickle://10.0.5.30:2004:a"],
    [
      "pickle://cache.example:2004",
      "cache.example",
      2004,
      undefined,
      "pickle://cache.example:2004",
    ],
    ["pickle://[::1]:2004", "::1", 2004, undefined, "pickle://[::1]:2004"],
    ["pickle://[::1]:2004:a", "::1", 2004, "a", "pickle://[::1]:2004:a"],
    ["pickle://[::1]:2004=a", "::1", 2004, "a", "pickle://[::1]:2004:a"],
    ["pickle://h:02004", "h", 2004, undefined, "pickle://h:2004"],
    // The scheme in any case, as in a URL; the id spells it one way.
    ["PICKLE://h:2004", "h", 2004, undefined, "pickle://h:2004"],
  ])("%s (pickle)", (input, host, port, instance, id) => {
    expect(parseDestination(input)).toEqual({
      host,
      port,
      instance,
      protocol: "pickle",
      tls: false,
      spec: input,
      id,
    });
  });

  it.each([
    // input, protocol, id
    ["tls://10.0.5.30:2003", "plaintext", "tls://10.0.5.30:2003"],
    ["TLS://10.0.5.30:2003=a", "plaintext", "tls://10.0.5.30:2003:a"],
    ["pickle+tls://cache.example:2004:a", "pickle", "pickle+tls://cache.example:2004:a"],
    ["Pickle+TLS://[::1]:2004", "pickle", "pickle+tls://[::1]:2004"],
  ])("%s (TLS)", (input, protocol, id) => {
    expect(parseDestination(input)).toMatchObject({ protocol, tls: true, spec: input, id });
  });

  it("a pickle destination has the address, port and instance of the plaintext one (what hashing keys by)", () => {
    const plain = parseDestination("10.0.0.1:2004:a");
    const pickle = parseDestination("pickle://10.0.0.1:2004:a");
    expect(pickle).toMatchObject({ host: plain.host, port: plain.port, instance: plain.instance });
    expect(pickle.id).not.toBe(plain.id);
    expect(pickle.spec).toBe("pickle://10.0.0.1:2004:a");
  });

  it("trims the input; spec keeps what was written, without the surrounding space", () => {
    expect(parseDestination("  10.0.0.1:2003:a \n")).toEqual({
      host: "10.0.0.1",
      port: 2003,
      instance: "a",
      protocol: "plaintext",
      tls: false,
      spec: "10.0.0.1:2003:a",
      id: "10.0.0.1:2003:a",
    });
  });

  it("gives the same id to the carbon (:) and carbon-c-relay (=) forms of one destination", () => {
    expect(parseDestination("h:2003:a").id).toBe(parseDestination("h:2003=a").id);
    expect(parseDestination("h:2003:a").spec).not.toBe(parseDestination("h:2003=a").spec);
  });

  it("splits at the first of = and : after the port: the rest is the instance", () => {
    expect(parseDestination("h:2003=a:b")).toMatchObject({ port: 2003, instance: "a:b" });
    expect(parseDestination("h:2003:a=b")).toMatchObject({ port: 2003, instance: "a=b" });
    // Carbon's parseDestinations refuses four colon-separated parts; polymur
    // takes everything after the port as the instance name.
    expect(parseDestination("h:2003:a:b")).toMatchObject({ port: 2003, instance: "a:b" });
  });

  it.each([
    ["", "empty"],
    ["   ", "empty"],
    ["10.0.0.1", "missing :port"],
    [":2003", "empty host"],
    ["a b:2003", "whitespace in host"],
    ["h:", 'port "" is not a number'],
    ["h:http", 'port "http" is not a number'],
    ["h:-1", 'port "-1" is not a number'],
    ["h:20 03", 'port "20 03" is not a number'],
    ["h:123456", 'port "123456" is not a number'],
    ["h:0", "port 0 is out of range 1-65535"],
    ["h:65536", "port 65536 is out of range 1-65535"],
    ["h:99999", "port 99999 is out of range 1-65535"],
    ["h:2003:", "empty instance name"],
    ["h:2003=", "empty instance name"],
    ["h:2003:a b", 'instance "a b" contains whitespace or a comma'],
    ["h:2003:a,b", 'instance "a,b" contains whitespace or a comma'],
    // IPv6 must be bracketed: the first colon ends the host.
    ["::1:2003", "empty host"],
    ["[::1:2003", "unclosed [ in IPv6 address"],
    ["[::1]2003", "missing :port after ]"],
    ["[::1]", "missing :port after ]"],
    ["[]:2003", '"" is not an IPv6 address'],
    ["[10.0.0.1]:2003", '"10.0.0.1" is not an IPv6 address'],
    ["[carbon]:2003", '"carbon" is not an IPv6 address'],
    ["[::1]:0", "port 0 is out of range 1-65535"],
    ["pickle://", "nothing after pickle://"],
    ["pickle://h", "missing :port"],
    ["pickle://h:0", "port 0 is out of range 1-65535"],
    ["pickle://:2004", "empty host"],
    ["pickle://[::1]", "missing :port after ]"],
    ["pickle://h:2004:", "empty instance name"],
    ["tcp://h:2003", 'unknown scheme "tcp://" (known: tls://, pickle://, pickle+tls://)'],
    ["udp://h:2003", 'unknown scheme "udp://" (known: tls://, pickle://, pickle+tls://)'],
    ["tls://", "nothing after tls://"],
    ["pickle:h:2004", 'port "h" is not a number'],
  ])("refuses %j: %s", (input, why) => {
    const err = thrown(() => parseDestination(input));
    expect(err.code).toBe(ErrorCode.DestinationSpec);
    expect(err.message).toBe(
      `invalid destination "${input}": ${why} (expected host:port, host:port:instance or host:port=instance, optionally after tls://, pickle://, pickle+tls://)`,
    );
  });
});

describe("parseDestinationList", () => {
  it("parses comma- and whitespace-separated lists in order", () => {
    const list = parseDestinationList("10.0.0.1:2003, 10.0.0.2:2003:b\n[::1]:2004=c\t h:1");
    expect(list.map((d) => d.id)).toEqual([
      "10.0.0.1:2003",
      "10.0.0.2:2003:b",
      "[::1]:2004:c",
      "h:1",
    ]);
    expect(list.map((d) => d.spec)).toEqual([
      "10.0.0.1:2003",
      "10.0.0.2:2003:b",
      "[::1]:2004=c",
      "h:1",
    ]);
  });

  it("is empty for an empty list, or one of separators only", () => {
    expect(parseDestinationList("")).toEqual([]);
    expect(parseDestinationList(" ,, \n ")).toEqual([]);
    expect(parseDestinationList(",h:1,,")).toHaveLength(1);
  });

  it("refuses duplicates by id, whichever form names them", () => {
    for (const list of [
      "h:2003,h:2003",
      "h:2003:a h:2003=a",
      "h:2003 h:02003",
      "[::1]:2003,[::1]:2003:x,[::1]:2003",
    ]) {
      const err = thrown(() => parseDestinationList(list));
      expect(err.code).toBe(ErrorCode.DestinationSpec);
      expect(err.message).toMatch(/^duplicate destination "/);
    }
    expect(thrown(() => parseDestinationList("h:2003:a,h:2003=a")).message).toBe(
      'duplicate destination "h:2003=a"',
    );
  });

  it("a plaintext and a pickle destination to one address are two; two pickle spellings of one are one", () => {
    const list = parseDestinationList("h:2004:a pickle://h:2004:a");
    expect(list.map((d) => [d.protocol, d.id])).toEqual([
      ["plaintext", "h:2004:a"],
      ["pickle", "pickle://h:2004:a"],
    ]);
    expect(thrown(() => parseDestinationList("pickle://h:2004:a,pickle://h:2004=a")).message).toBe(
      'duplicate destination "pickle://h:2004=a"',
    );
  });

  it("keeps destinations that differ in instance, port or host apart", () => {
    const ids = parseDestinationList("h:2003 h:2003:a h:2003:b h:2004 g:2003").map((d) => d.id);
    expect(new Set(ids).size).toBe(5);
  });

  it("fails on the first bad member, naming it", () => {
    const err = thrown(() => parseDestinationList("h:2003,h:0,x"));
    expect(err.message).toMatch(/^invalid destination "h:0": port 0 is out of range/);
  });
});
