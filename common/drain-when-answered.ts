import http2 from "node:http2";
import type { connectNodeAdapter } from "@connectrpc/connect-node";

type NodeServerRequest = Parameters<ReturnType<typeof connectNodeAdapter>>[0];

/**
 * After a request's answer is complete, how much more of its body is read
 * and dropped before its HTTP/2 stream is reset. A Node client cannot take in
 * an answer while more than its session memory (`maxSessionMemory`, 10 MB by
 * default) of its own request is unsent; with less than that unsent, it
 * finishes its write within this bound and reads the answer.
 */
export const DRAIN_AFTER_ANSWER_BYTES = 16 * 1024 * 1024;

/**
 * Frees a caller that is still sending when its answer is complete: a call
 * refused before its body is read (a missing credential, a message over the
 * read limit) is answered at once, but the rest of its body would stay unread,
 * the stream's flow-control window closed and the caller blocked sending it,
 * for as long as it cares to wait (a 400 MB health check hung for minutes).
 * So the rest is read and dropped, up to `maxBytes`, and then the stream is
 * reset with NO_ERROR (RFC 9113 §8.1: a server "MAY request that the client
 * abort transmission of a request without error by sending a RST_STREAM with
 * an error code of NO_ERROR after sending a complete response"). It is not
 * reset at once: a Node client (connect-node's included) that is still
 * writing when the reset comes reports "Premature close", not the answer.
 * HTTP/1.1 needs none of this: Node reads and drops a body left unread once
 * the response is sent.
 */
export function drainWhenAnswered(
  req: NodeServerRequest,
  maxBytes = DRAIN_AFTER_ANSWER_BYTES,
): void {
  if (!("stream" in req)) return;
  const stream = req.stream;
  // Node's compatibility layer always asks for trailers, and its own
  // listener, registered first, has just sent them: the answer is whole.
  stream.once("wantTrailers", () => {
    if (stream.closed || stream.destroyed || stream.readableEnded) return;
    // The request's own reader is done with it, and pauses the stream.
    stream.removeAllListeners("data");
    let dropped = 0;
    stream.on("data", (chunk: Buffer) => {
      dropped += chunk.length;
      if (dropped > maxBytes && !stream.closed) stream.close(http2.constants.NGHTTP2_NO_ERROR);
    });
    stream.resume();
  });
}
