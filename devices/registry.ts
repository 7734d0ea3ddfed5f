import { jetstreamManager, type JetStreamManager } from "@nats-io/jetstream";
import { Kvm, type KV } from "@nats-io/kv";
import type { NatsConnection } from "@nats-io/transport-node";
import { InvalidInputError, isToken } from "../fabric/core/index.js";
import { casUpdate } from "./kv-cas.js";
import { DEVICES_BUCKET, kvKeys } from "../streams/index.js";
import { deviceKey, deviceRecordSchema, MAX_METADATA_ENTRIES, METADATA_KEY, newDevice, type DeviceRecord } from "./record.js";

export interface PresenceEvent {
  event: "connect" | "disconnect";
  name: string;
  site?: string | undefined;
  role?: string | undefined;
  publicKey?: string | undefined;
  tags?: readonly string[] | undefined;
  protocol: string;
  at: number;
}

/**
 * The device registry (KV `devices`): every device issued, provisioned or first seen, with its keys, role and
 * tags, the metadata operators set, and its live state. Every change is a compare-and-set on the entry's
 * revision, so the hub's processes (presence from nats-server and the ingresses, the keystore's issues,
 * operators) never lose one another's updates.
 */
export class DeviceRegistry {
  private constructor(
    private readonly kv: KV,
    private readonly jsm: JetStreamManager,
  ) {}

  static async open(nc: NatsConnection): Promise<DeviceRegistry> {
    return new DeviceRegistry(await new Kvm(nc).open(DEVICES_BUCKET), await jetstreamManager(nc));
  }

  async get(name: string, site: string | undefined): Promise<DeviceRecord | undefined> {
    const e = await this.kv.get(deviceKey(name, site));
    if (e === null || e.operation !== "PUT") return undefined;
    const r = deviceRecordSchema.safeParse(e.json());
    return r.success ? r.data : undefined;
  }

  /** Every device (of a site), by site and name. */
  async list(site?: string): Promise<DeviceRecord[]> {
    const keys = await kvKeys(this.jsm, DEVICES_BUCKET, site === undefined ? ">" : `${site}.*`);
    const out = (await Promise.all(keys.map(async (k) => this.get(k.slice(k.indexOf(".") + 1), k.startsWith("_.") ? undefined : k.slice(0, k.indexOf(".")))))).filter(
      (r): r is DeviceRecord => r !== undefined,
    );
    return out.sort((a, b) => (a.site ?? "").localeCompare(b.site ?? "") || a.name.localeCompare(b.name));
  }

  /** Changes an entry (made when absent) with `fn`; undefined from `fn` leaves it as it is. */
  async modify(name: string, site: string | undefined, source: DeviceRecord["source"], fn: (r: DeviceRecord) => DeviceRecord | undefined): Promise<DeviceRecord> {
    return casUpdate(
      this.kv,
      deviceKey(name, site),
      (e) => {
        const held = e === undefined ? undefined : deviceRecordSchema.safeParse(e.json());
        return held?.success === true ? held.data : newDevice(name, site, source);
      },
      (current) => fn(structuredClone(current)),
    );
  }

  /** A device connected or disconnected (nats-server's advisories, the ingress's events). */
  async presence(p: PresenceEvent): Promise<DeviceRecord> {
    return this.modify(p.name, p.site, "seen", (r) => {
      const connections = Math.max(0, r.state.connections + (p.event === "connect" ? 1 : -1));
      r.state = { ...r.state, connections, online: connections > 0, lastSeen: Math.max(r.state.lastSeen, p.at), protocol: p.protocol };
      if (p.role !== undefined) r.role = p.role;
      if (p.publicKey !== undefined && !r.keys.includes(p.publicKey)) r.keys.push(p.publicKey);
      if (p.tags !== undefined && p.tags.length > 0) r.tags = [...p.tags];
      return r;
    });
  }

  /** What the keystore issued to a device (its key, role and tags); nothing else of the entry changes. */
  async issued(u: { name: string; site?: string | undefined; role: string; publicKey: string; tags: readonly string[] }): Promise<DeviceRecord> {
    return this.modify(u.name, u.site, "issued", (r) => {
      if (r.keys.includes(u.publicKey) && r.role === u.role) return undefined;
      if (!r.keys.includes(u.publicKey)) r.keys.push(u.publicKey);
      r.role = u.role;
      r.tags = [...u.tags];
      return r;
    });
  }

  /** Operators' metadata (model, firmware, location, …): a value of null removes the key. */
  async setMetadata(name: string, site: string | undefined, entries: Readonly<Record<string, string | null>>): Promise<DeviceRecord> {
    if (!isToken(name)) throw new InvalidInputError(`device name ${JSON.stringify(name)} is not a fabric name`);
    if (site !== undefined && !isToken(site)) throw new InvalidInputError(`site ${JSON.stringify(site)} is not a fabric name`);
    for (const [k, v] of Object.entries(entries)) {
      if (!METADATA_KEY.test(k)) throw new InvalidInputError(`metadata key ${JSON.stringify(k)}: use a lowercase letter, then up to 31 of a-z 0-9 _ -`);
      if (v !== null && v.length > 256) throw new InvalidInputError(`metadata ${k}: at most 256 characters`);
    }
    return this.modify(name, site, "issued", (r) => {
      for (const [k, v] of Object.entries(entries)) {
        if (v === null) delete r.metadata[k];
        else r.metadata[k] = v;
      }
      if (Object.keys(r.metadata).length > MAX_METADATA_ENTRIES) throw new InvalidInputError(`a device has at most ${MAX_METADATA_ENTRIES} metadata entries`);
      return r;
    });
  }

  /** A Homie v4 attribute of a device (`$state` drives its online state: ready is online, the others are not). */
  async homieAttribute(name: string, site: string | undefined, attribute: string, value: string, at = Date.now()): Promise<DeviceRecord> {
    return this.modify(name, site, "seen", (r) => {
      r.homie = { ...r.homie, [attribute]: value };
      if (attribute === "$state") r.state = { ...r.state, online: value === "ready", lastSeen: Math.max(r.state.lastSeen, at), protocol: "homie" };
      return r;
    });
  }
}
