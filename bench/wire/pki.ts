/**
 * A throwaway PKI for the `wire-in` scenario's TLS listeners, made with the
 * openssl CLI: a CA and a server certificate for 127.0.0.1 and localhost
 * signed by it, ECDSA P-256, valid one day, in a fresh directory. polymur
 * takes the certificate and key files (--tls-cert, --tls-key);
 * carbon-c-relay's `transport plain ssl PEM` listener takes one file with
 * both; the sender verifies the server against the CA.
 */
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";

/** The files of a BenchPki. */
export interface BenchPki {
  /** CA certificate (PEM): what the sender trusts. */
  caFile: string;
  /** Server certificate and its key (PEM). */
  certFile: string;
  keyFile: string;
  /** Certificate then key in one PEM file, as carbon-c-relay's `ssl` listener takes them. */
  combinedFile: string;
}

/** Makes the CA and the server certificate in `dir` (which must exist). */
export function createBenchPki(dir: string): BenchPki {
  const f = (n: string): string => path.join(dir, n);
  const ossl = (...args: string[]): void => {
    execFileSync("openssl", args, { cwd: dir, stdio: "pipe" });
  };
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
  ossl(
    "req",
    "-x509",
    ...ec,
    "-keyout",
    "ca.key",
    "-out",
    "ca.pem",
    "-days",
    "1",
    "-subj",
    "/CN=polymur bench CA",
  );
  ossl("req", ...ec, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost");
  fs.writeFileSync(f("ext.cnf"), "subjectAltName=DNS:localhost,IP:127.0.0.1\n");
  ossl(
    ...["x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key"],
    ...["-CAcreateserial", "-out", "server.pem", "-days", "1", "-extfile", "ext.cnf"],
  );
  fs.writeFileSync(
    f("server-combined.pem"),
    fs.readFileSync(f("server.pem"), "utf8") + fs.readFileSync(f("server.key"), "utf8"),
  );
  return {
    caFile: f("ca.pem"),
    certFile: f("server.pem"),
    keyFile: f("server.key"),
    combinedFile: f("server-combined.pem"),
  };
}
