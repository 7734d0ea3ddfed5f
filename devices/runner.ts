import { jetstream } from "@nats-io/jetstream";
import { headers, type Msg, type NatsConnection, type Subscription } from "@nats-io/transport-node";
import { REJECT_REASON_HEADER } from "../streams/index.js";
import { publishDelta, reportSchema, TwinError, Twins, twinSubjects } from "./twins.js";
import { errorMessage, type Logger } from "../fabric/core/index.js";
import { peekJwt, type Keystore } from "../identity/index.js";
import { CONNECT_ADVISORY, DEVICE_ROLES, DISCONNECT_ADVISORY, INGRESS_PRESENCE_ALL, ingressPresenceSchema, roleAndSite, serverPresenceSchema } from "./presence.js";
import { DeviceRegistry, type PresenceEvent } from "./registry.js";
import { homieAttributeSchema, HOMIE_ATTRIBUTES_ALL } from "./homie.js";

/** The registry takes in what the keystore issued this often (and at start). */
export const ISSUED_SYNC_MS = 30_000;

export interface DeviceRegistryRunner {
  registry: DeviceRegistry;
  twins: Twins;
  /** Takes in what the keystore issued now (the identity service calls it after an issue). */
  syncIssued(): Promise<void>;
  stop(): Promise<void>;
}

/**
 * The hub's side of the device registry: presence from nats-server's connect and disconnect advisories (NATS
 * clients and nats-server's own MQTT listener; a system connection) and from the MQTT ingresses, Homie
 * attributes from the ingresses, and what the keystore issued.
 */
export async function startDeviceRegistry(o: { nc: NatsConnection; sysNc: NatsConnection; ks: Keystore; account: string; logger: Logger }): Promise<DeviceRegistryRunner> {
  const log = o.logger.child({ component: "devices" });
  const registry = await DeviceRegistry.open(o.nc);
  const accountKey = o.ks.account(o.account).publicKey;
  const fail = (what: string) => (err: unknown) => log.warn({ err: errorMessage(err) }, `device registry: ${what}`);
  const twins = await Twins.open(o.nc);
  const js = jetstream(o.nc);
  /** A device that connects is told what desired holds that reported does not. */
  const connected = (name: string, site: string | undefined): void => {
    if (site === undefined) return;
    twins.get(name, site).then((t) => publishDelta(o.nc, name, site, t), fail("twin delta not sent"));
  };
  const presence = (p: PresenceEvent): void => {
    registry.presence(p).then(() => {
      if (p.event === "connect") connected(p.name, p.site);
    }, fail("presence not recorded"));
  };
  /** A device's report (`events.<site>.<name>.twin-report`): accepted or rejected, on its command subjects. */
  const report = async (m: Msg): Promise<void> => {
    const [, site = "", name = ""] = m.subject.split(".");
    const refuse = async (code: string, message: string): Promise<void> => {
      o.nc.publish(twinSubjects.rejected(site, name), JSON.stringify({ code, message }));
      const h = headers();
      h.set(REJECT_REASON_HEADER, `${code}: ${message}`);
      await js.publish(`rejected.${m.subject}`, m.data, { headers: h });
    };
    let body: unknown;
    try {
      body = m.json();
    } catch {
      await refuse("FABRIC_ERR_TWIN_INVALID", "the report is not JSON");
      return;
    }
    const r = reportSchema.safeParse(body);
    if (!r.success) {
      await refuse("FABRIC_ERR_TWIN_INVALID", `the report must be {"state": {"reported": {…}}, "version"?}: ${r.error.issues[0]?.path.join(".") ?? ""} ${r.error.issues[0]?.message ?? ""}`);
      return;
    }
    try {
      const t = await twins.updateReported(name, site, r.data.state.reported, r.data.version);
      o.nc.publish(twinSubjects.accepted(site, name), JSON.stringify({ state: { reported: r.data.state.reported }, version: t.version }));
      publishDelta(o.nc, name, site, t);
    } catch (err) {
      if (err instanceof TwinError) await refuse(err.code, err.message);
      else throw err;
    }
  };
  const subs: Subscription[] = [
    o.nc.subscribe(twinSubjects.allReports, { callback: (_e, m) => void report(m).catch(fail("twin report not handled")) }),
    o.nc.subscribe(INGRESS_PRESENCE_ALL, {
      callback: (_e, m) => {
        const p = ingressPresenceSchema.safeParse(m.json());
        if (p.success) presence(p.data);
      },
    }),
    o.nc.subscribe(HOMIE_ATTRIBUTES_ALL, {
      callback: (_e, m) => {
        const a = homieAttributeSchema.safeParse(m.json());
        if (a.success) registry.homieAttribute(a.data.device, a.data.site, a.data.attribute, a.data.value, a.data.at).catch(fail("Homie attribute not recorded"));
      },
    }),
    ...["CONNECT", "DISCONNECT"].map((what) =>
      o.sysNc.subscribe(`$SYS.ACCOUNT.${accountKey}.${what}`, {
        callback: (_e, m) => {
          const a = serverPresenceSchema.safeParse(m.json());
          if (!a.success || (a.data.type !== CONNECT_ADVISORY && a.data.type !== DISCONNECT_ADVISORY)) {
            log.debug({ subject: m.subject }, "ignored a message that is no connect or disconnect advisory");
            return;
          }
          const c = a.data.client;
          const tags = c.tags ?? [];
          const { role, site } = roleAndSite(tags);
          if (role === undefined || !DEVICE_ROLES.has(role) || c.jwt === undefined) return;
          let name: unknown;
          try {
            name = peekJwt(c.jwt)["name"];
          } catch {
            return;
          }
          if (typeof name !== "string") return;
          presence({ event: a.data.type === CONNECT_ADVISORY ? "connect" : "disconnect", name, site, role, publicKey: c.user, tags, protocol: c.client_type ?? "nats", at: Date.now() });
        },
      }),
    ),
  ];
  const syncIssued = async (): Promise<void> => {
    for (const u of o.ks.users(o.account)) {
      if (!DEVICE_ROLES.has(u.role) || u.revokedAt !== undefined) continue;
      await registry.issued({ name: u.name, site: u.site, role: u.role, publicKey: u.publicKey, tags: [`role:${u.role}`, ...(u.site === undefined ? [] : [`site:${u.site}`])] });
    }
  };
  await syncIssued().catch(fail("issued devices not taken in"));
  const timer = setInterval(() => void syncIssued().catch(fail("issued devices not taken in")), ISSUED_SYNC_MS);
  timer.unref();
  log.info("device registry running");
  return {
    registry,
    twins,
    syncIssued,
    stop: async () => {
      clearInterval(timer);
      for (const s of subs) s.unsubscribe();
      await o.nc.flush().catch(() => undefined);
    },
  };
}
