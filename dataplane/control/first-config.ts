import {
  type ControlSubscriber,
  type ControlSubscriberOptions,
  createControlSubscriber,
} from "./control-subscriber.ts";

/**
 * Starts a managed node's subscription and resolves once its first
 * configuration (saved from an earlier run, or the control plane's first
 * snapshot) is applied. A managed node starts listening only then, so
 * nothing it accepts is lost for want of destinations (or, on a gateway, of
 * API keys); senders wait in the TCP backlog meanwhile. A snapshot that
 * `onConfig` refuses (throws) does not count.
 */
export async function subscribeUntilConfigured(
  options: ControlSubscriberOptions,
  waiting: string,
): Promise<ControlSubscriber> {
  let first: () => void = () => {};
  const configured = new Promise<void>((resolve) => {
    first = resolve;
  });
  const subscriber = createControlSubscriber({
    ...options,
    onConfig(config) {
      options.onConfig(config);
      first();
    },
  });
  options.log.info(
    { controlPlane: options.url, group: options.group, nodeId: subscriber.nodeId },
    waiting,
  );
  subscriber.start();
  await configured;
  return subscriber;
}
