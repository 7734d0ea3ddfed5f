#!/usr/bin/env node
// Installs what `npm start` and `npm test` need, by itself, without touching the system:
//   1. the npm packages (npm ci) when node_modules is missing or older than package-lock.json;
//   2. nats-server >= 2.14: found through NATS_SERVER_BIN, then PATH, then tools/nats-server/; where it is
//      missing or too old, Debian's current package is downloaded with a private apt state (sid suite:
//      the binary is static and runs on bookworm) and unpacked into tools/nats-server/.
// Plain Node with no dependencies: it runs before node_modules exists. Progress goes to stderr.
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { delimiter, dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const TOOLS = join(ROOT, "tools");
const NATS_DIR = join(TOOLS, "nats-server");
const MIN_VERSION = [2, 14, 0];
const log = (msg) => process.stderr.write(`setup: ${msg}\n`);

function run(cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, { encoding: "utf8", ...opts });
  return { ok: r.status === 0, out: `${r.stdout ?? ""}${r.stderr ?? ""}`, error: r.error };
}

function ensureNpmPackages() {
  const lock = join(ROOT, "package-lock.json");
  const marker = join(ROOT, "node_modules", ".package-lock.json");
  if (existsSync(marker) && (!existsSync(lock) || statSync(marker).mtimeMs >= statSync(lock).mtimeMs)) return;
  log("installing npm packages (npm ci)");
  const r = spawnSync("npm", [existsSync(lock) ? "ci" : "install", "--no-audit", "--no-fund"], {
    cwd: ROOT,
    stdio: ["ignore", "inherit", "inherit"],
  });
  if (r.status !== 0) {
    log("npm install failed; see above");
    process.exit(1);
  }
}

export function parseVersion(text) {
  const m = /v?(\d+)\.(\d+)\.(\d+)/.exec(text);
  return m ? [Number(m[1]), Number(m[2]), Number(m[3])] : undefined;
}

function atLeast(v, min) {
  for (let i = 0; i < 3; i++) {
    if (v[i] !== min[i]) return v[i] > min[i];
  }
  return true;
}

function probe(bin) {
  if (!bin || !existsSync(bin)) return undefined;
  const r = run(bin, ["--version"]);
  const version = r.ok ? parseVersion(r.out) : undefined;
  return version ? { bin, version } : undefined;
}

function onPath(name) {
  for (const dir of (process.env.PATH ?? "").split(delimiter)) {
    if (dir && existsSync(join(dir, name))) return join(dir, name);
  }
  return undefined;
}

function toolsBinary() {
  for (const sub of ["usr/sbin", "usr/bin"]) {
    const p = join(NATS_DIR, sub, "nats-server");
    if (existsSync(p)) return p;
  }
  return undefined;
}

function findNatsServer() {
  const candidates = [
    ["NATS_SERVER_BIN", process.env.NATS_SERVER_BIN],
    ["PATH", onPath("nats-server")],
    ["tools", toolsBinary()],
  ];
  for (const [where, bin] of candidates) {
    const found = probe(bin);
    if (!found) continue;
    if (atLeast(found.version, MIN_VERSION)) return { ...found, where };
    log(`ignoring ${bin} (${where}): version ${found.version.join(".")} is older than ${MIN_VERSION.join(".")}`);
  }
  return undefined;
}

/**
 * Downloads Debian packages with a private apt state (the system's package database and sources untouched)
 * and unpacks them into `target`. Returns false when apt is not available or a step failed (it says why).
 */
function installDebs(packages, suite, target) {
  if (!onPath("apt-get") || !onPath("dpkg-deb")) return false;
  const apt = join(TOOLS, `apt-${suite}`);
  rmSync(apt, { recursive: true, force: true });
  for (const d of ["lists/partial", "cache/archives/partial", "etc", "debs"]) mkdirSync(join(apt, d), { recursive: true });
  const keyring = "/usr/share/keyrings/debian-archive-keyring.gpg";
  const signedBy = existsSync(keyring) ? `[signed-by=${keyring}] ` : "";
  writeFileSync(join(apt, "etc", "sources.list"), `deb ${signedBy}http://deb.debian.org/debian ${suite} main\n`);
  const opts = [
    "-o", `Dir::Etc::SourceList=${join(apt, "etc", "sources.list")}`,
    "-o", "Dir::Etc::SourceParts=/dev/null",
    "-o", `Dir::State::Lists=${join(apt, "lists")}`,
    "-o", `Dir::Cache=${join(apt, "cache")}`,
    "-o", "Dir::State::Status=/dev/null",
    "-o", "APT::Sandbox::User=root",
    "-q",
  ];
  try {
    const up = run("apt-get", [...opts, "update"]);
    if (!up.ok) {
      log(`apt-get update (private ${suite} list) failed:\n${up.out}`);
      return false;
    }
    const dl = run("apt-get", [...opts, "download", ...packages], { cwd: join(apt, "debs") });
    const debs = readdirSync(join(apt, "debs")).filter((f) => f.endsWith(".deb"));
    if (!dl.ok || debs.length < packages.length) {
      log(`apt-get download ${packages.join(" ")} failed:\n${dl.out}`);
      return false;
    }
    rmSync(target, { recursive: true, force: true });
    for (const deb of debs) {
      const x = run("dpkg-deb", ["-x", join(apt, "debs", deb), target]);
      if (!x.ok) {
        log(`dpkg-deb -x ${deb} failed:\n${x.out}`);
        return false;
      }
    }
    log(`installed ${debs.join(", ")} into ${target}`);
    return true;
  } finally {
    rmSync(apt, { recursive: true, force: true });
  }
}

function ensureNatsServer() {
  let found = findNatsServer();
  if (!found) {
    log("nats-server >= 2.14 not found: downloading Debian's nats-server package into tools/ (system packages untouched)");
    if (installDebs(["nats-server"], "sid", NATS_DIR)) found = findNatsServer();
  }
  if (!found) {
    log(
      [
        "nats-server >= 2.14 is required and could not be installed automatically.",
        "Install it, then run this again, in one of these ways:",
        "  - Debian/Ubuntu: the 'nats-server' package from Debian sid (a static binary), or",
        "  - download a release archive from https://github.com/nats-io/nats-server/releases and put",
        "    nats-server on PATH, or set NATS_SERVER_BIN=/path/to/nats-server, or",
        "  - go install github.com/nats-io/nats-server/v2@latest",
      ].join("\n"),
    );
    process.exit(1);
  }
  log(`nats-server ${found.version.join(".")} (${found.where}): ${found.bin}`);
}

/** Mosquitto (broker and clients) for the MQTT tests and benchmarks: a real legacy peer and an anchor. */
const MOSQUITTO_DIR = join(TOOLS, "mosquitto");
const MOSQUITTO_PACKAGES = ["mosquitto", "mosquitto-clients", "libmosquitto1", "libcjson1", "libdlt2", "libwrap0"];

function mosquittoWorks() {
  const lib = join(MOSQUITTO_DIR, "usr", "lib", "x86_64-linux-gnu");
  const bin = join(MOSQUITTO_DIR, "usr", "bin", "mosquitto_pub");
  if (!existsSync(bin)) return false;
  const r = run(bin, ["--help"], { env: { ...process.env, LD_LIBRARY_PATH: `${lib}:${join(MOSQUITTO_DIR, "lib", "x86_64-linux-gnu")}` } });
  return /mosquitto_pub version/.test(r.out);
}

function ensureMosquitto() {
  if (mosquittoWorks()) return;
  log("mosquitto not in tools/: downloading Debian's mosquitto packages into tools/ (system packages untouched)");
  if (!installDebs(MOSQUITTO_PACKAGES, "bookworm", MOSQUITTO_DIR) || !mosquittoWorks()) {
    log("mosquitto could not be installed into tools/: install Debian's mosquitto and mosquitto-clients (the MQTT tests use them)");
    process.exit(1);
  }
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const args = new Set(process.argv.slice(2));
  if (!args.has("--no-npm")) ensureNpmPackages();
  if (!args.has("--no-nats")) ensureNatsServer();
  if (args.has("--mosquitto")) ensureMosquitto();
}
