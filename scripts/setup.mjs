#!/usr/bin/env node
// Installs what `npm start` and `npm test` need, by itself, without touching the system:
//   1. the npm packages (npm ci) when node_modules is missing or older than package-lock.json;
//   2. nats-server >= 2.14: found through NATS_SERVER_BIN, then PATH, then tools/nats-server/; where it is
//      missing or too old, Debian's current package is downloaded with a private apt state (sid suite:
//      the binary is static and runs on bookworm) and unpacked into tools/nats-server/;
//   3. with --mosquitto, Debian's mosquitto into tools/mosquitto/;
//   4. with --examples, a python3 with grpc and a Go toolchain with google.golang.org/grpc for the gRPC
//      authentication examples (examples/python, examples/go): found on the machine, else Debian bookworm's
//      python3-grpcio / golang-go + golang-google-grpc-dev and what they need unpacked into tools/python/
//      and tools/go/ (Go builds in GOPATH mode, GOCACHE in tools/go-cache/).
//   5. with --prometheus, a Prometheus server for the metrics tests: found through PROMETHEUS_BIN, then PATH,
//      then tools/prometheus/; where missing, Debian bookworm's prometheus package (a Go binary) unpacked there.
//   6. with --chromium, a headless Chromium for the status page test: FABRIC_CHROMIUM, then chromium or
//      chromium-browser on PATH, else Debian bookworm's chromium and the libraries it lacks in tools/chromium/.
//   7. with --postgres, PostgreSQL's server programs for the sink tests (initdb, pg_ctl, postgres): FABRIC_PG_BINDIR,
//      then PATH, then /usr/lib/postgresql/*/bin, then tools/postgres/; where missing, Debian bookworm's
//      postgresql-15 and what it needs that the machine lacks unpacked there.
//   8. with --timescaledb, a PostgreSQL with the TimescaleDB extension for the sink's TimescaleDB tests:
//      FABRIC_TIMESCALEDB_BINDIR, then /usr/lib/postgresql/*/bin with timescaledb.control in its share/, then
//      tools/timescaledb/; where missing, Debian trixie's postgresql-17 and postgresql-17-timescaledb (Apache
//      edition) with trixie's glibc unpacked there, each program wrapped to run through trixie's loader.
// Plain Node with no dependencies: it runs before node_modules exists. Progress goes to stderr.
import { spawnSync } from "node:child_process";
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, realpathSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import { basename, delimiter, dirname, join, resolve } from "node:path";
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

/** apt options for a private apt state in `dir` (the system's package database and sources untouched). */
function privateAptOptions(dir) {
  return [
    "-o", `Dir::Etc::SourceList=${join(dir, "etc", "sources.list")}`,
    "-o", "Dir::Etc::SourceParts=/dev/null",
    "-o", `Dir::State::Lists=${join(dir, "lists")}`,
    "-o", `Dir::Cache=${join(dir, "cache")}`,
    "-o", "Dir::State::Status=/dev/null",
    "-o", "APT::Sandbox::User=root",
    "-q",
  ];
}

/** Names of the packages installed on this machine among `names` (dpkg's database, read only). */
function installedOnSystem(names) {
  if (names.length === 0 || !onPath("dpkg-query")) return new Set();
  const r = run("dpkg-query", ["-W", "-f", "${Package} ${db:Status-Abbrev}\\n", ...names]);
  const out = new Set();
  for (const line of r.out.split("\n")) {
    const [name, abbrev] = line.split(" ");
    if (name && abbrev?.startsWith("ii")) out.add(name);
  }
  return out;
}

/**
 * `roots` and what they depend on (Depends and Pre-Depends, recursively) that this machine lacks, as apt
 * in the private state `opts` sees the suite: a package installed on the system ends the walk there; of
 * alternatives, one already chosen or installed satisfies, else the first the suite has.
 */
function dependencyClosure(roots, opts) {
  const chosen = new Set();
  let level = [...new Set(roots)];
  while (level.length > 0) {
    const installed = installedOnSystem(level);
    const todo = level.filter((p) => !chosen.has(p) && !installed.has(p));
    for (const p of todo) chosen.add(p);
    if (todo.length === 0) break;
    const r = run("apt-cache", [...opts, "depends", "--no-recommends", "--no-suggests", "--no-conflicts", "--no-breaks", "--no-replaces", "--no-enhances", ...todo]);
    if (!r.ok) throw new Error(`apt-cache depends ${todo.join(" ")} failed:\n${r.out}`);
    // each group: alternatives of one dependency; a <virtual> one brings the providers listed under it
    const groups = [];
    let open = false;
    for (const line of r.out.split("\n")) {
      const dep = /^ ([ |])(?:Pre)?Depends: (<?)([^>\s]+)>?$/.exec(line);
      if (dep) {
        const name = dep[3].replace(/:(any|amd64|native)$/, "");
        if (!open) groups.push([]);
        groups[groups.length - 1].push({ name, virtual: dep[2] === "<" });
        open = dep[1] === "|";
        continue;
      }
      const provider = /^    (\S+)$/.exec(line);
      if (provider && groups.length > 0) groups[groups.length - 1].push({ name: provider[1].replace(/:(any|amd64)$/, ""), virtual: false });
      else if (/^\S/.test(line)) open = false;
    }
    const next = new Set();
    const allNames = [...new Set(groups.flat().map((d) => d.name))];
    const installedDeps = installedOnSystem(allNames);
    for (const g of groups) {
      const real = g.filter((d) => !d.virtual);
      if (real.length === 0) continue;
      if (g.some((d) => chosen.has(d.name) || next.has(d.name) || installedDeps.has(d.name))) continue;
      next.add(real[0].name);
    }
    level = [...next];
  }
  return [...chosen].sort();
}

/**
 * Downloads Debian packages with a private apt state (the system's package database and sources untouched)
 * and unpacks them into `target`. With `withDependencies`, also what they depend on that the machine lacks.
 * Returns false when apt is not available or a step failed (it says why).
 */
function installDebs(packages, suite, target, { withDependencies = false } = {}) {
  if (!onPath("apt-get") || !onPath("dpkg-deb")) {
    log("apt-get or dpkg-deb is not available: cannot download Debian packages");
    return false;
  }
  // one private apt state per target: two setups (or two flags) downloading at once do not share it
  const apt = join(TOOLS, `apt-${suite}-${basename(target)}`);
  rmSync(apt, { recursive: true, force: true });
  for (const d of ["lists/partial", "cache/archives/partial", "etc", "debs"]) mkdirSync(join(apt, d), { recursive: true });
  const keyring = "/usr/share/keyrings/debian-archive-keyring.gpg";
  const signedBy = existsSync(keyring) ? `[signed-by=${keyring}] ` : "";
  writeFileSync(join(apt, "etc", "sources.list"), `deb ${signedBy}http://deb.debian.org/debian ${suite} main\n`);
  const opts = privateAptOptions(apt);
  try {
    const up = run("apt-get", [...opts, "update"]);
    if (!up.ok) {
      log(`apt-get update (private ${suite} list) failed:\n${up.out}`);
      return false;
    }
    let wanted = packages;
    if (withDependencies) {
      try {
        wanted = dependencyClosure(packages, opts);
      } catch (err) {
        log(String(err instanceof Error ? err.message : err));
        return false;
      }
      if (wanted.length === 0) {
        log(`${packages.join(", ")}: all installed on the system already`);
        return true;
      }
      log(`downloading ${wanted.length} Debian packages (${suite}): ${wanted.join(" ")}`);
    }
    const dl = run("apt-get", [...opts, "download", ...wanted], { cwd: join(apt, "debs") });
    const debs = readdirSync(join(apt, "debs")).filter((f) => f.endsWith(".deb"));
    if (!dl.ok || debs.length < wanted.length) {
      log(`apt-get download ${wanted.join(" ")} failed:\n${dl.out}`);
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

/**
 * The toolchains of the gRPC authentication examples (examples/python, examples/go), found the same way by
 * this setup and by the tests (test/harness/examples.ts imports these): a python3 that imports grpc and an
 * Ed25519 module (cryptography or nacl), and a Go toolchain that builds examples/go in GOPATH mode against
 * google.golang.org/grpc sources. Where missing, Debian bookworm's packages (and what they depend on that the
 * machine lacks) are unpacked into tools/python and tools/go.
 */
const PYTHON_DIR = join(TOOLS, "python");
const GO_DIR = join(TOOLS, "go");
const GO_CACHE = join(TOOLS, "go-cache");
const PYTHON_PACKAGES = ["python3-grpcio", "python3-cryptography"];
const GO_PACKAGES = ["golang-go", "golang-google-grpc-dev"];
const PYTHON_PROBE = [
  "import grpc",
  "try:",
  "    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey",
  "except ImportError:",
  "    import nacl.signing",
  "print(grpc.__version__)",
].join("\n");
/** The import path examples/go is built under (its go.mod's module). */
const GO_MODULE = "fabricexamples";

const MULTIARCH = { x64: "x86_64-linux-gnu", arm64: "aarch64-linux-gnu" }[process.arch] ?? `${process.arch}-linux-gnu`;
const joinPaths = (...parts) => parts.filter((p) => p !== undefined && p !== "").join(delimiter);
const shellQuote = (v) => `'${v.replace(/'/g, "'\\''")}'`;
const libraryDirs = (root) => [join(root, "usr", "lib", MULTIARCH), join(root, "lib", MULTIARCH)].filter((d) => existsSync(d));

/**
 * A python3 that runs the Python example: `{ bin, env, where, grpcVersion }`, `env` being the variables to
 * add to the environment (PYTHONPATH, LD_LIBRARY_PATH for tools/python); undefined when there is none.
 */
export function findPython() {
  const candidates = [
    ["FABRIC_PYTHON", process.env.FABRIC_PYTHON, {}],
    ["PATH", onPath("python3"), {}],
    ["system", "/usr/bin/python3", {}],
  ];
  const site = join(PYTHON_DIR, "usr", "lib", "python3", "dist-packages");
  if (existsSync(site)) {
    const env = { PYTHONPATH: joinPaths(site, process.env.PYTHONPATH), LD_LIBRARY_PATH: joinPaths(...libraryDirs(PYTHON_DIR), process.env.LD_LIBRARY_PATH) };
    candidates.push(["tools/python", join(PYTHON_DIR, "usr", "bin", "python3"), env], ["system python3, modules in tools/python", "/usr/bin/python3", env], ["python3 on PATH, modules in tools/python", onPath("python3"), env]);
  }
  const tried = new Set();
  for (const [where, bin, env] of candidates) {
    if (!bin || !existsSync(bin) || tried.has(`${bin} ${JSON.stringify(env)}`)) continue;
    tried.add(`${bin} ${JSON.stringify(env)}`);
    const r = run(bin, ["-c", PYTHON_PROBE], { env: { ...process.env, ...env }, timeout: 30_000 });
    if (r.ok) return { bin, env, where, grpcVersion: r.out.trim().split("\n").pop() };
  }
  return undefined;
}

function goCandidates() {
  const hasGrpc = (gopath) => existsSync(join(gopath, "src", "google.golang.org", "grpc", "credentials"));
  const out = [];
  const pathGo = onPath("go");
  const toolsGocode = join(GO_DIR, "usr", "share", "gocode");
  if (pathGo) {
    for (const [where, gocode] of [["go on PATH, system /usr/share/gocode", "/usr/share/gocode"], ["go on PATH, tools/go gocode", toolsGocode]]) {
      if (hasGrpc(gocode)) out.push({ where, bin: pathGo, gopath: gocode, env: {} });
    }
  }
  const lib = join(GO_DIR, "usr", "lib");
  const roots = existsSync(lib) ? readdirSync(lib).filter((d) => /^go-\d/.test(d)).sort().reverse() : [];
  for (const r of roots) {
    const goroot = join(lib, r);
    if (existsSync(join(goroot, "bin", "go")) && hasGrpc(toolsGocode)) out.push({ where: `tools/go (${r})`, bin: join(goroot, "bin", "go"), gopath: toolsGocode, env: { GOROOT: goroot } });
  }
  return out;
}

/**
 * Builds examples/go/publish into `outDir` with the first Go toolchain that can (GOPATH mode, no network):
 * `{ ok: true, binary, go, where }`, or `{ ok: false, reasons }` saying what was tried.
 */
export function buildGoExample(outDir) {
  const ws = join(outDir, "gopath");
  rmSync(ws, { recursive: true, force: true });
  cpSync(join(ROOT, "examples", "go"), join(ws, "src", GO_MODULE), { recursive: true });
  const reasons = [];
  const candidates = goCandidates();
  if (candidates.length === 0) reasons.push("no go on PATH with google.golang.org/grpc in /usr/share/gocode, and none in tools/go");
  for (const c of candidates) {
    const binary = join(outDir, "publish");
    const env = { ...process.env, ...c.env, GO111MODULE: "off", GOPATH: joinPaths(ws, c.gopath), GOCACHE: GO_CACHE, CGO_ENABLED: "0", GOFLAGS: "", GOTOOLCHAIN: "local" };
    const r = run(c.bin, ["build", "-o", binary, `${GO_MODULE}/publish`], { env, cwd: ws, timeout: 600_000 });
    if (r.ok && existsSync(binary)) return { ok: true, binary, go: c.bin, where: c.where };
    reasons.push(`${c.where} (${c.bin}): ${r.error?.message ?? r.out.trim()}`);
  }
  return { ok: false, reasons };
}

function ensureExamples() {
  let failed = false;
  let py = findPython();
  if (!py) {
    log(`python3 with the grpc module and Ed25519 (cryptography or nacl) not found: downloading Debian's ${PYTHON_PACKAGES.join(", ")} and what they need into tools/python (system packages untouched)`);
    if (installDebs(PYTHON_PACKAGES, "bookworm", PYTHON_DIR, { withDependencies: true })) py = findPython();
  }
  if (py) log(`python3 with grpc ${py.grpcVersion} (${py.where}): ${py.bin}`);
  else {
    log("python3 with grpc could not be found or installed into tools/python: install python3-grpcio and python3-cryptography (or pip install grpcio cryptography), or set FABRIC_PYTHON");
    failed = true;
  }
  // tools/examples-bin: `python3` (the one found, with its environment) and the built Go `publish`
  const bin = join(TOOLS, "examples-bin");
  mkdirSync(bin, { recursive: true });
  let go = buildGoExample(bin);
  if (!go.ok) {
    log(`no Go toolchain builds examples/go (${go.reasons.join("; ")}): downloading Debian's ${GO_PACKAGES.join(", ")} and their golang-*-dev dependencies into tools/go (system packages untouched)`);
    if (installDebs(GO_PACKAGES, "bookworm", GO_DIR, { withDependencies: true })) go = buildGoExample(bin);
  }
  rmSync(join(bin, "gopath"), { recursive: true, force: true });
  if (go.ok) log(`go (${go.where}): ${go.go} builds examples/go: ${go.binary}`);
  else {
    log(`examples/go could not be built: ${go.reasons.join("; ")}\nInstall Debian's golang-go and golang-google-grpc-dev (GOPATH mode), or put a go with google.golang.org/grpc in /usr/share/gocode on PATH`);
    failed = true;
  }
  if (py) {
    const exports = Object.entries(py.env).map(([k, v]) => `export ${k}=${shellQuote(v)}\n`).join("");
    writeFileSync(join(bin, "python3"), `#!/bin/sh\n# the python3 setup found for examples/python (${py.where})\n${exports}exec ${shellQuote(py.bin)} "$@"\n`, { mode: 0o755 });
  }
  if (failed) process.exit(1);
}

/**
 * Prometheus for the metrics tests (test/harness/prometheus.ts imports findPrometheus): PROMETHEUS_BIN, then
 * PATH, then tools/prometheus/ (Debian bookworm's package unpacked, without its web UI dependencies: the tests
 * use only the HTTP API). Returns `{ bin, where, version }` or undefined.
 */
const PROMETHEUS_DIR = join(TOOLS, "prometheus");

export function findPrometheus() {
  const candidates = [
    ["PROMETHEUS_BIN", process.env.PROMETHEUS_BIN],
    ["PATH", onPath("prometheus")],
    ["tools", join(PROMETHEUS_DIR, "usr", "bin", "prometheus")],
  ];
  for (const [where, bin] of candidates) {
    if (!bin || !existsSync(bin)) continue;
    const r = run(bin, ["--version"]);
    const version = r.ok ? parseVersion(r.out) : undefined;
    if (version) return { bin, where, version: version.join(".") };
  }
  return undefined;
}

function ensurePrometheus() {
  let found = findPrometheus();
  if (!found) {
    log("prometheus not found: downloading Debian's prometheus package into tools/prometheus (system packages untouched)");
    if (installDebs(["prometheus"], "bookworm", PROMETHEUS_DIR)) found = findPrometheus();
  }
  if (!found) {
    log("prometheus could not be found or installed into tools/prometheus: install Debian's prometheus package, or set PROMETHEUS_BIN (the metrics tests use it)");
    process.exit(1);
  }
  log(`prometheus ${found.version} (${found.where}): ${found.bin}`);
}

/**
 * A headless Chromium for the status page's browser test (test/harness/chromium.ts imports findChromium):
 * FABRIC_CHROMIUM, then `chromium` / `chromium-browser` on PATH, then tools/chromium/ (Debian bookworm's
 * chromium and the shared libraries, fonts and fontconfig it needs that the machine lacks, unpacked there).
 * Returns `{ bin, env, where, version }` (`env`: what to add to the environment) or undefined.
 */
const CHROMIUM_DIR = join(TOOLS, "chromium");

function chromiumVersion(bin, env) {
  const r = run(bin, ["--version"], { env: { ...process.env, ...env }, timeout: 30_000 });
  return r.ok ? parseVersion(r.out) : undefined;
}

export function findChromium() {
  const candidates = [
    ["FABRIC_CHROMIUM", process.env.FABRIC_CHROMIUM, {}],
    ["PATH", onPath("chromium"), {}],
    ["PATH", onPath("chromium-browser"), {}],
  ];
  const toolsBin = join(CHROMIUM_DIR, "usr", "lib", "chromium", "chromium");
  if (existsSync(toolsBin)) {
    // libpulse keeps its private library in a subfolder (the package's RUNPATH names /usr/lib/…/pulseaudio)
    const pulse = libraryDirs(CHROMIUM_DIR).map((d) => join(d, "pulseaudio")).filter((d) => existsSync(d));
    const env = { LD_LIBRARY_PATH: joinPaths(...libraryDirs(CHROMIUM_DIR), ...pulse, process.env.LD_LIBRARY_PATH) };
    // fontconfig unpacked here too: its config names the fonts unpacked here and the system's
    const fontsConf = join(CHROMIUM_DIR, "fonts.conf");
    if (existsSync(fontsConf)) env.FONTCONFIG_FILE = fontsConf;
    candidates.push(["tools/chromium", toolsBin, env]);
  }
  for (const [where, bin, env] of candidates) {
    if (!bin || !existsSync(bin)) continue;
    const version = chromiumVersion(bin, env);
    if (version) return { bin, env, where, version: version.join(".") };
  }
  return undefined;
}

function ensureChromium() {
  let found = findChromium();
  if (!found) {
    log("chromium not found: downloading Debian's chromium and what it needs into tools/chromium (system packages untouched)");
    if (installDebs(["chromium", "fonts-dejavu-core"], "bookworm", CHROMIUM_DIR, { withDependencies: true })) {
      // the fonts unpacked here and the system's, with the aliases (sans-serif…) of either fontconfig
      const fonts = [join(CHROMIUM_DIR, "usr", "share", "fonts"), "/usr/share/fonts"].map((d) => `  <dir>${d}</dir>\n`).join("");
      const aliases = [join(CHROMIUM_DIR, "etc", "fonts", "conf.d"), "/etc/fonts/conf.d"].map((d) => `  <include ignore_missing="yes">${d}</include>\n`).join("");
      writeFileSync(join(CHROMIUM_DIR, "fonts.conf"), `<?xml version="1.0"?>\n<!DOCTYPE fontconfig SYSTEM "urn:fontconfig:fonts.dtd">\n<fontconfig>\n${fonts}${aliases}  <cachedir>${join(CHROMIUM_DIR, "fontconfig-cache")}</cachedir>\n</fontconfig>\n`);
      found = findChromium();
    }
  }
  if (!found) {
    log("chromium could not be found or installed into tools/chromium: install Debian's chromium package, or set FABRIC_CHROMIUM (the status page test uses it)");
    process.exit(1);
  }
  log(`chromium ${found.version} (${found.where}): ${found.bin}`);
}

/**
 * PostgreSQL's server programs for the sink tests (test/harness/postgres.ts imports findPostgres): the folder
 * holding initdb, pg_ctl and postgres, from FABRIC_PG_BINDIR, then PATH (symlinks followed), then the newest
 * /usr/lib/postgresql/<major>/bin, then tools/postgres/ (Debian bookworm's postgresql-15 and the libraries it
 * lacks, unpacked there: postgres finds its share/ and lib/ relative to its own folder, so it runs from there).
 * Returns `{ binDir, env, where, version }` (`env`: what to add to the environment) or undefined.
 */
const POSTGRES_DIR = join(TOOLS, "postgres");
const POSTGRES_PACKAGES = ["postgresql-15"];
const POSTGRES_PROGRAMS = ["initdb", "pg_ctl", "postgres"];

/** The newest /usr/lib/postgresql/<major>/bin under `root` holding the server programs and for which `accept(major)` holds. */
function newestPostgresBinDir(root, accept = () => true) {
  const lib = join(root, "usr", "lib", "postgresql");
  if (!existsSync(lib)) return undefined;
  const majors = readdirSync(lib).filter((d) => /^\d+$/.test(d)).sort((a, b) => Number(b) - Number(a));
  for (const m of majors) {
    const dir = join(lib, m, "bin");
    if (POSTGRES_PROGRAMS.every((p) => existsSync(join(dir, p))) && accept(m)) return dir;
  }
  return undefined;
}

/** The first candidate `[where, binDir, env]` whose server programs are there and whose postgres tells its version. */
function firstWorkingPostgres(candidates) {
  for (const [where, binDir, env] of candidates) {
    if (!binDir || !POSTGRES_PROGRAMS.every((p) => existsSync(join(binDir, p)))) continue;
    const r = run(join(binDir, "postgres"), ["--version"], { env: { ...process.env, ...env }, timeout: 30_000 });
    const m = r.ok ? /\(PostgreSQL\) (\d+(?:\.\d+)?)/.exec(r.out) : null;
    if (m) return { binDir, env, where, version: m[1] };
  }
  return undefined;
}

export function findPostgres() {
  const onPathDir = () => {
    const bin = onPath("initdb");
    return bin === undefined ? undefined : dirname(realpathSync(bin));
  };
  const candidates = [
    ["FABRIC_PG_BINDIR", process.env.FABRIC_PG_BINDIR, {}],
    ["PATH", onPathDir(), {}],
    ["system", newestPostgresBinDir("/"), {}],
  ];
  const toolsDir = newestPostgresBinDir(POSTGRES_DIR);
  if (toolsDir) candidates.push(["tools/postgres", toolsDir, { LD_LIBRARY_PATH: joinPaths(...libraryDirs(POSTGRES_DIR), process.env.LD_LIBRARY_PATH) }]);
  return firstWorkingPostgres(candidates);
}

function ensurePostgres() {
  let found = findPostgres();
  if (!found) {
    log(`postgres not found: downloading Debian's ${POSTGRES_PACKAGES.join(", ")} and what it needs into tools/postgres (system packages untouched)`);
    if (installDebs(POSTGRES_PACKAGES, "bookworm", POSTGRES_DIR, { withDependencies: true })) found = findPostgres();
  }
  if (!found) {
    log("postgres could not be found or installed into tools/postgres: install Debian's postgresql-15, or set FABRIC_PG_BINDIR to the folder holding initdb, pg_ctl and postgres (the sink tests use them)");
    process.exit(1);
  }
  log(`postgres ${found.version} (${found.where}): ${found.binDir}`);
}

/**
 * A PostgreSQL with the TimescaleDB extension for the sink's TimescaleDB tests (test/harness/postgres.ts imports
 * findTimescaledb): FABRIC_TIMESCALEDB_BINDIR (the folder holding initdb, pg_ctl and postgres of an installation
 * that has the extension), then the newest /usr/lib/postgresql/<major>/bin whose /usr/share/postgresql/<major>
 * has timescaledb.control (a Debian-style install: Timescale's packages), then tools/timescaledb/. Bookworm has
 * no TimescaleDB; Debian trixie packages it (postgresql-17-timescaledb, the Apache-licensed edition), built
 * against trixie's glibc: tools/timescaledb holds trixie's postgresql-17, the extension, and trixie's glibc and
 * the libraries that need it (TIMESCALEDB_PACKAGES); each program in its bin/ is a wrapper running the real one
 * (renamed .<name>.real) through trixie's dynamic loader with trixie's libraries first, the system's after
 * (for the rest: libssl, libzstd… are bookworm's, which run on the newer glibc). `--argv0` keeps the wrapper's
 * path as the program's: postgres finds its share/ and lib/ relative to it, initdb the postgres wrapper.
 * Returns `{ binDir, env, where, version, timescaledb }` (`timescaledb`: the extension's default version) or undefined.
 */
const TIMESCALEDB_DIR = join(TOOLS, "timescaledb");
const TIMESCALEDB_MAJOR = "17";
const TIMESCALEDB_PACKAGES = [`postgresql-${TIMESCALEDB_MAJOR}`, `postgresql-${TIMESCALEDB_MAJOR}-timescaledb`, "libc6", "libstdc++6", "libgcc-s1", "libicu76", "libpq5", "libldap2", "libsasl2-2", "libsasl2-modules-db"];

/** The timescaledb extension's default version in a Debian-style tree under `root` for PostgreSQL `major`, or undefined. */
function timescaledbVersion(root, major) {
  const control = join(root, "usr", "share", "postgresql", major, "extension", "timescaledb.control");
  if (!existsSync(control)) return undefined;
  return /^default_version\s*=\s*'([^']+)'/m.exec(readFileSync(control, "utf8"))?.[1];
}

export function findTimescaledb() {
  const withExtension = (root) => newestPostgresBinDir(root, (major) => timescaledbVersion(root, major) !== undefined);
  const candidates = [
    ["FABRIC_TIMESCALEDB_BINDIR", process.env.FABRIC_TIMESCALEDB_BINDIR, {}],
    ["system", withExtension("/"), {}],
    ["tools/timescaledb", withExtension(TIMESCALEDB_DIR), {}],
  ];
  const found = firstWorkingPostgres(candidates);
  if (!found) return undefined;
  // <root>/usr/lib/postgresql/<major>/bin: the extension's version where the tree is Debian's (the override may not be)
  const major = basename(dirname(found.binDir));
  return { ...found, timescaledb: timescaledbVersion(resolve(found.binDir, "..", "..", "..", "..", ".."), major) ?? "unknown" };
}

/** Makes each program of tools/timescaledb's bin/ a wrapper running it through trixie's loader and libraries; false when the loader is missing. */
function wrapTrixiePrograms() {
  const libDir = join(TIMESCALEDB_DIR, "usr", "lib", MULTIARCH);
  const loader = existsSync(libDir) ? readdirSync(libDir).find((f) => /^ld-linux.*\.so\.\d+$/.test(f)) : undefined;
  if (loader === undefined) {
    log(`no dynamic loader (ld-linux*.so) in ${libDir}: trixie's libc6 did not unpack as expected`);
    return false;
  }
  const libraryPath = joinPaths(libDir, join("/lib", MULTIARCH), join("/usr/lib", MULTIARCH));
  const binDir = join(TIMESCALEDB_DIR, "usr", "lib", "postgresql", TIMESCALEDB_MAJOR, "bin");
  for (const name of readdirSync(binDir)) {
    const path = join(binDir, name);
    if (name.startsWith(".") || !statSync(path).isFile()) continue;
    const real = join(binDir, `.${name}.real`);
    renameSync(path, real);
    writeFileSync(path, `#!/bin/sh\n# ${name} of Debian trixie, run with trixie's glibc (scripts/setup.mjs --timescaledb)\nexec ${shellQuote(join(libDir, loader))} --library-path ${shellQuote(libraryPath)} --argv0 "$0" ${shellQuote(real)} "$@"\n`, { mode: 0o755 });
  }
  return true;
}

function ensureTimescaledb() {
  let found = findTimescaledb();
  if (!found) {
    log(`postgres with timescaledb not found: downloading Debian trixie's ${TIMESCALEDB_PACKAGES.join(", ")} into tools/timescaledb (system packages untouched)`);
    if (installDebs(TIMESCALEDB_PACKAGES, "trixie", TIMESCALEDB_DIR) && wrapTrixiePrograms()) found = findTimescaledb();
  }
  if (!found) {
    log("postgres with timescaledb could not be found or installed into tools/timescaledb: install TimescaleDB for PostgreSQL, or set FABRIC_TIMESCALEDB_BINDIR to the folder holding initdb, pg_ctl and postgres of an installation that has it (the sink's TimescaleDB tests use them)");
    process.exit(1);
  }
  log(`postgres ${found.version} with timescaledb ${found.timescaledb} (${found.where}): ${found.binDir}`);
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const args = new Set(process.argv.slice(2));
  if (!args.has("--no-npm")) ensureNpmPackages();
  if (!args.has("--no-nats")) ensureNatsServer();
  if (args.has("--mosquitto")) ensureMosquitto();
  if (args.has("--examples")) ensureExamples();
  if (args.has("--prometheus")) ensurePrometheus();
  if (args.has("--chromium")) ensureChromium();
  if (args.has("--postgres")) ensurePostgres();
  if (args.has("--timescaledb")) ensureTimescaledb();
}
