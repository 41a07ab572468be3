// The Ansible role (ansible/roles/confmux), run for real against this machine with `-c local`, into a
// scratch prefix: every path the role writes (install dir, config dir, unit dir, the service user's
// home, a fake /etc/asterisk and /etc/freeswitch) points into a temp dir, packages are not installed
// (confmux_install_packages: false, the machine has them), the role's `npm ci --omit=dev` runs with
// --prefer-offline (npm's cache is warm after scripts/node.sh: about 5 s, no network needed), and
// `asterisk -rx` / `fs_cli` are stand-ins that log what they were asked to do.
//
// What it checks: syntax; a first run (-v --diff) and a second run that changes nothing; that no
// secret reaches Ansible's output; the rendered config passes the bridge's own validation
// (loadConfig, as `confmux serve` runs it); owners and modes; the unit file's lines (and
// `systemd-analyze verify` where it exists); the #include lines added once, the PBX's own lines kept,
// the reloads asked for once; FreeSWITCH's files well-formed; a failing native build not failing the
// role; and the bridge starting from the installed tree as the service user and answering /healthz.
//
// What it does not cover: the service is not enabled or started by systemd and /healthz is not
// awaited by the role, since systemd is not PID 1 here (the role skips both when
// ansible_service_mgr != 'systemd' and says so; on a machine with systemd this test turns them off
// itself, so as not to touch the host's systemd); no Debian package is installed (Node.js from
// Debian or NodeSource, g++/make/python3); the `git` install method and confmux_node_modules_link
// is not run; nothing runs over SSH on a remote host; the Asterisk and FreeSWITCH snippets are not
// loaded by a real Asterisk or FreeSWITCH (only their shape is checked here).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadConfig } from '../../bridge/config.ts';

const REPO = fileURLToPath(new URL('../../', import.meta.url));
const ANSIBLE_DIR = join(REPO, 'ansible');
const USER = 'confmux-test';
const ARI_SECRET = `ari-${process.pid}-Vault-Only`;
const ESL_SECRET = `esl-${process.pid}-Vault-Only`;
const TERMINAL_SECRET = `terminal-${process.pid}-Vault-Only`;
const SECRETS = [ARI_SECRET, ESL_SECRET, TERMINAL_SECRET];

const haveAnsible = spawnSync('ansible-playbook', ['--version'], { encoding: 'utf8' }).status === 0;
const skip = haveAnsible ? false : 'ansible-playbook is not installed (bash scripts/setup.sh installs ansible-core)';
const systemdRuns = existsSync('/run/systemd/system');

let dir = '';
let userExisted = true;
let bridgePort = 0;
let ariPort = 0;
const p = (...parts: string[]): string => join(dir, ...parts);

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

interface Run {
  status: number | null;
  out: string;
  recap: { ok: number; changed: number; failed: number; unreachable: number };
}

function playbook(args: string[]): Run {
  const r = spawnSync('ansible-playbook', ['-i', p('inventory.ini'), '-e', `@${p('vars.json')}`, ...args, join(ANSIBLE_DIR, 'site.yml')], {
    cwd: ANSIBLE_DIR,
    encoding: 'utf8',
    timeout: 150_000,
    env: {
      ...process.env,
      ANSIBLE_CONFIG: join(ANSIBLE_DIR, 'ansible.cfg'),
      ANSIBLE_HOME: p('ansible-home'),
      ANSIBLE_LOCAL_TEMP: p('ansible-home', 'tmp'),
      ANSIBLE_REMOTE_TMP: p('ansible-home', 'remote-tmp'),
      ANSIBLE_NOCOLOR: '1',
      ANSIBLE_FORCE_COLOR: '0',
      ANSIBLE_STDOUT_CALLBACK: 'default',
      ANSIBLE_PIPELINING: '1',
    },
  });
  const out = `${r.stdout}\n${r.stderr}`;
  const m = /localhost\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)/.exec(out);
  const recap = m ? { ok: Number(m[1]), changed: Number(m[2]), unreachable: Number(m[3]), failed: Number(m[4]) } : { ok: 0, changed: -1, unreachable: -1, failed: -1 };
  return { status: r.status, out, recap };
}

function assertRunOk(r: Run, what: string): void {
  assert.equal(r.status, 0, `${what} failed:\n${r.out.slice(-6000)}`);
  assert.equal(r.recap.failed, 0, what);
  assert.equal(r.recap.unreachable, 0, what);
}

function assertNoSecret(text: string, what: string): void {
  for (const s of SECRETS) assert.ok(!text.includes(s), `${what} shows a secret`);
}

function mode(path: string): number {
  return statSync(path).mode & 0o7777;
}

function idOf(flag: '-u' | '-g'): number {
  return Number(spawnSync('id', [flag, USER], { encoding: 'utf8' }).stdout.trim());
}

function count(haystack: string, needle: string): number {
  return haystack.split(needle).length - 1;
}

const PBX_FILES: Record<string, string> = {
  'asterisk/extensions.conf': '[general]\nstatic=yes\n\n[globals]\n\n[default]\nexten => _X.,1,Hangup()\n',
  'asterisk/http.conf': '[general]\nenabled=no\nbindaddr=0.0.0.0\n',
  'asterisk/ari.conf': '[general]\nenabled = yes\npretty = no\n',
  'asterisk/sorcery.conf': '; the stock file maps nothing\n;[res_pjsip]\n',
  'asterisk/confbridge.conf': '[general]\n\n[default_bridge]\ntype=bridge\n',
  'asterisk/pjsip.conf': '[transport-udp]\ntype=transport\nprotocol=udp\nbind=0.0.0.0\n',
  'freeswitch/freeswitch.xml':
    '<?xml version="1.0"?>\n<document type="freeswitch/xml">\n  <section name="configuration" description="Various Configuration">\n    <X-PRE-PROCESS cmd="include" data="autoload_configs/*.xml"/>\n  </section>\n  <section name="dialplan" description="Regex/XML Dialplan">\n    <X-PRE-PROCESS cmd="include" data="dialplan/*.xml"/>\n  </section>\n</document>\n',
  'freeswitch/dialplan/default.xml': '<include>\n  <context name="default">\n    <X-PRE-PROCESS cmd="include" data="default/*.xml"/>\n  </context>\n</include>\n',
  'freeswitch/autoload_configs/event_socket.conf.xml':
    '<configuration name="event_socket.conf" description="Socket Client">\n  <settings>\n    <param name="listen-ip" value="::"/>\n    <param name="password" value="ClueCon"/>\n  </settings>\n</configuration>\n',
};

before(async () => {
  if (!haveAnsible) return;
  dir = mkdtempSync(join(tmpdir(), 'confmux-ansible-'));
  chmodSync(dir, 0o755); // the service user must reach the install tree inside
  for (const [file, text] of Object.entries(PBX_FILES)) {
    mkdirSync(join(dir, file, '..'), { recursive: true });
    writeFileSync(join(dir, file), text);
  }
  mkdirSync(p('systemd'));
  mkdirSync(p('bin'));
  // stand-ins for `asterisk -rx <command>` and `fs_cli [-H h -P p -p pw] -x <command>`: log the command only
  writeFileSync(p('bin', 'asterisk'), `#!/bin/sh\n[ "$1" = -rx ] && printf '%s\\n' "$2" >> '${p('asterisk-rx.log')}'\n`);
  writeFileSync(p('bin', 'fs_cli'), `#!/bin/sh\nwhile [ $# -gt 0 ]; do [ "$1" = -x ] && printf '%s\\n' "$2" >> '${p('fs_cli.log')}'; shift; done\n`);
  chmodSync(p('bin', 'asterisk'), 0o755);
  chmodSync(p('bin', 'fs_cli'), 0o755);
  userExisted = spawnSync('id', [USER]).status === 0;
  bridgePort = await freePort();
  ariPort = await freePort(); // nothing listens there: the PBX is "down" for the bridge
  writeFileSync(p('inventory.ini'), '[confmux]\nlocalhost ansible_connection=local ansible_python_interpreter=/usr/bin/python3 ansible_become=false\n');
  const vars: Record<string, unknown> = {
    confmux_install_dir: p('opt', 'confmux'),
    confmux_config_dir: p('etc', 'confmux'),
    confmux_systemd_unit_dir: p('systemd'),
    confmux_home: p('var', 'lib', 'confmux'),
    confmux_archive_cache_dir: dir,
    confmux_user: USER,
    confmux_group: USER,
    confmux_install_packages: false,
    confmux_npm_ci_args: '--omit=dev --no-audit --no-fund --prefer-offline',
    confmux_host: '127.0.0.1',
    confmux_port: bridgePort,
    confmux_plain: true,
    confmux_drain_timeout_ms: 1000,
    confmux_asterisk_url: `http://127.0.0.1:${ariPort}`,
    confmux_asterisk_password: ARI_SECRET,
    confmux_asterisk_app: 'confmuxtest',
    confmux_config_extra: { limits: { maxConnectionsPerIp: 128 } },
    confmux_asterisk_install: true,
    confmux_asterisk_config_dir: p('asterisk'),
    confmux_asterisk_config_group: 'root',
    confmux_asterisk_cli: p('bin', 'asterisk'),
    confmux_asterisk_terminals: [{ number: '2001', password: TERMINAL_SECRET, name: 'Lobby' }],
    confmux_freeswitch_install: true,
    confmux_freeswitch_config_dir: p('freeswitch'),
    confmux_freeswitch_config_group: 'root',
    confmux_freeswitch_password: ESL_SECRET,
    confmux_freeswitch_cli: p('bin', 'fs_cli'),
  };
  // The role enables and starts the unit and waits for /healthz only where systemd runs; here it
  // does not (no systemd as PID 1), so the role's own check skips them. Where systemd does run, the
  // test turns them off, so as not to touch the host's systemd with a unit in a scratch directory.
  if (systemdRuns) vars.confmux_service_manage = false;
  writeFileSync(p('vars.json'), JSON.stringify(vars, null, 2));
});

after(() => {
  if (!dir) return;
  if (!userExisted) {
    spawnSync('userdel', [USER]);
    spawnSync('groupdel', [USER]);
  }
  rmSync(dir, { recursive: true, force: true });
});

test('ansible-playbook --syntax-check site.yml', { skip }, () => {
  const r = playbook(['--syntax-check']);
  assert.equal(r.status, 0, r.out);
});

let firstRun: Run | undefined;

test('first run (-v --diff): installs, configures, asks for the PBX reloads; no secret in the output', { skip, timeout: 150_000 }, () => {
  firstRun = playbook(['-v', '--diff']);
  assertRunOk(firstRun, 'first run');
  assert.ok(firstRun.recap.changed > 10, `changed=${firstRun.recap.changed}`);
  assertNoSecret(firstRun.out, 'the first run');
  if (!systemdRuns) assert.match(firstRun.out, /No systemd here, so the service is neither enabled nor started/);
  assert.match(firstRun.out, /sorcery_confmux\.conf is new or changed: res_pjsip reads its sorcery mapping only when Asterisk\s+starts/);
});

test('the release: the controller\'s HEAD, owned by root, not writable by the service; the native pump built', { skip }, () => {
  assert.ok(firstRun, 'first run');
  const install = p('opt', 'confmux');
  const head = spawnSync('git', ['-C', REPO, 'rev-parse', 'HEAD'], { encoding: 'utf8' }).stdout.trim();
  assert.equal(readFileSync(join(install, 'REVISION'), 'utf8').trim(), head);
  for (const f of ['', 'bin/confmux.mjs', 'bridge/config.ts', 'package.json']) {
    const st = statSync(join(install, f));
    assert.equal(st.uid, 0, f);
    assert.equal(st.mode & 0o022, 0, `${f} is group/world-writable`);
  }
  assert.ok(existsSync(join(install, 'native/build/Release/confmux_pump.node')), 'native media pump built');
  // npm ci --omit=dev: what `serve` needs (tsx runs the TypeScript), none of the devDependencies
  const modules = join(install, 'node_modules');
  assert.ok(lstatSync(modules).isDirectory(), 'node_modules is the install\'s own (npm ci), not a link');
  for (const dep of Object.keys((JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')) as { dependencies: Record<string, string> }).dependencies)) {
    assert.ok(existsSync(join(modules, dep, 'package.json')), `dependency ${dep} installed`);
  }
  for (const dev of ['typescript', 'fast-check', 'playwright-core', '@types/node']) assert.ok(!existsSync(join(modules, dev)), `devDependency ${dev} left out`);
  const home = p('var', 'lib', 'confmux');
  assert.equal(statSync(home).uid, idOf('-u'));
  assert.equal(mode(home), 0o750);
});

test('the config file: the bridge\'s own validation accepts it; 0640 root:confmux; the secret is in it', { skip }, () => {
  assert.ok(firstRun, 'first run');
  const file = p('etc', 'confmux', 'config.json');
  const config = loadConfig({ file, env: {}, forServe: true });
  assert.equal(config.server.port, bridgePort);
  assert.equal(config.server.plain, true);
  assert.equal(config.mediaServer, 'asterisk');
  assert.equal(config.asterisk.password, ARI_SECRET);
  assert.equal(config.asterisk.url, `http://127.0.0.1:${ariPort}`);
  assert.equal(config.asterisk.app, 'confmuxtest');
  assert.equal(config.shutdown.drainTimeoutMs, 1000);
  assert.equal(config.limits.maxConnectionsPerIp, 128, 'confmux_config_extra merged');
  const st = statSync(file);
  assert.equal(mode(file), 0o640);
  assert.equal(st.uid, 0);
  assert.equal(st.gid, idOf('-g'));
  const d = statSync(p('etc', 'confmux'));
  assert.equal(d.mode & 0o7777, 0o750);
  assert.equal(d.gid, idOf('-g'));
});

test('the systemd unit', { skip }, () => {
  assert.ok(firstRun, 'first run');
  const unit = p('systemd', 'confmux.service');
  const text = readFileSync(unit, 'utf8');
  const lines = new Set(text.split('\n'));
  const install = p('opt', 'confmux');
  const node = spawnSync('sh', ['-c', 'command -v node'], { encoding: 'utf8' }).stdout.trim();
  for (const line of [
    `User=${USER}`,
    `Group=${USER}`,
    `ExecStart=${node} --max-semi-space-size=1 --heap-growing-percent=25 ${install}/bin/confmux.mjs serve --config ${p('etc', 'confmux', 'config.json')}`,
    'Environment=MALLOC_ARENA_MAX=2',
    'Restart=on-failure',
    'RestartPreventExitStatus=2',
    'LimitNOFILE=65536',
    'AmbientCapabilities=CAP_NET_BIND_SERVICE CAP_SYS_NICE',
    'CapabilityBoundingSet=CAP_NET_BIND_SERVICE CAP_SYS_NICE',
    'NoNewPrivileges=yes',
    'ProtectSystem=strict',
    `ReadWritePaths=${p('var', 'lib', 'confmux')}`,
    'PrivateTmp=yes',
    'KillSignal=SIGTERM',
    'KillMode=mixed',
    'WantedBy=multi-user.target',
  ]) {
    assert.ok(lines.has(line), `unit lacks ${line}`);
  }
  const stop = /^TimeoutStopSec=(\d+)s$/m.exec(text);
  assert.ok(stop, 'TimeoutStopSec');
  assert.ok(Number(stop[1]) * 1000 > 1000, 'TimeoutStopSec longer than shutdown.drainTimeoutMs');
  assert.equal(mode(unit), 0o644);
  assert.ok(text.endsWith('\n'));
  const analyze = spawnSync('systemd-analyze', ['verify', unit], { encoding: 'utf8' });
  if (analyze.error) return; // not installed: the lines above are all that is checked
  assert.equal(analyze.status, 0, analyze.stderr);
  assert.equal(analyze.stderr.trim(), '', `systemd-analyze verify: ${analyze.stderr}`);
});

test('Asterisk: snippets beside the PBX\'s files, one #include each, the PBX\'s own lines kept, each reload asked for once', { skip }, () => {
  assert.ok(firstRun, 'first run');
  for (const name of ['http', 'ari', 'sorcery', 'confbridge', 'extensions', 'pjsip']) {
    const conf = p('asterisk', `${name}.conf`);
    const text = readFileSync(conf, 'utf8');
    assert.ok(text.startsWith(PBX_FILES[`asterisk/${name}.conf`]!), `${name}.conf: the PBX's own lines are kept`);
    assert.equal(count(text, `#include ${name}_confmux.conf`), 1, `${name}.conf includes ${name}_confmux.conf once`);
    const snippet = p('asterisk', `${name}_confmux.conf`);
    assert.equal(mode(snippet), 0o640, snippet);
  }
  const http = readFileSync(p('asterisk', 'http_confmux.conf'), 'utf8');
  assert.match(http, /^\[general\]\(\+\)$/m);
  assert.match(http, /^enabled = yes$/m);
  assert.match(http, /^bindaddr = 127\.0\.0\.1$/m);
  assert.match(http, new RegExp(`^bindport = ${ariPort}$`, 'm'));
  const ari = readFileSync(p('asterisk', 'ari_confmux.conf'), 'utf8');
  assert.match(ari, /^\[confmux\]$/m);
  assert.ok(ari.includes(`password = ${ARI_SECRET}\n`), 'the ARI user has the bridge\'s password');
  const confbridge = readFileSync(p('asterisk', 'confbridge_confmux.conf'), 'utf8');
  for (const s of ['confmux_bridge', 'confmux_user', 'confmux_video', 'confmux_presentation', 'confmux_presenter']) assert.match(confbridge, new RegExp(`^\\[${s}\\]$`, 'm'), s);
  assert.doesNotMatch(confbridge, /confmux_pin_user/, 'the sandbox-only profile is left out');
  const extensions = readFileSync(p('asterisk', 'extensions_confmux.conf'), 'utf8');
  assert.match(extensions, /^exten => _X\.,1,Stasis\(confmuxtest,invite,\$\{EXTEN\}\)$/m, 'the Stasis app is asterisk.app');
  assert.doesNotMatch(extensions, /Stasis\(confmux,/);
  assert.match(extensions, /^\[confmux-rooms\]$/m);
  assert.match(extensions, /^\[confmux-terminals\]\nexten => 2001,hint,Stasis:2001\n/m, 'hints of confmux_asterisk_terminals');
  assert.doesNotMatch(extensions, /^exten => 1001,hint/m, 'the sandbox\'s hints replaced');
  const pjsip = readFileSync(p('asterisk', 'pjsip_confmux.conf'), 'utf8');
  assert.match(pjsip, /^\[2001\]\(confmux-terminal-auth\)$/m);
  assert.ok(pjsip.includes(`password = ${TERMINAL_SECRET}\n`));
  assert.match(pjsip, /^\[confmux-media\]$/m);
  assert.doesNotMatch(pjsip, /sipphone|transport-udp-loopback|sandbox-/, 'nothing of the sandbox');
  const sorcery = readFileSync(p('asterisk', 'sorcery_confmux.conf'), 'utf8');
  assert.match(sorcery, /^\[res_pjsip\]$/m);
  const rx = readFileSync(p('asterisk-rx.log'), 'utf8').trim().split('\n').sort();
  assert.deepEqual(rx, ['dialplan reload', 'module reload app_confbridge.so', 'module reload http', 'module reload res_ari.so', 'module reload res_pjsip.so']);
});

test('FreeSWITCH: dialplan files well-formed, rooms extend the stock default context, event socket replaced (backup kept), the video sofia profile on loopback, reloadxml once', { skip }, () => {
  assert.ok(firstRun, 'first run');
  const files = ['freeswitch/dialplan/confmux.xml', 'freeswitch/dialplan/default/confmux-rooms.xml', 'freeswitch/autoload_configs/event_socket.conf.xml', 'freeswitch/sip_profiles/confmux.xml'].map((f) => p(f));
  const xml = spawnSync('/usr/bin/python3', ['-c', 'import sys, xml.etree.ElementTree as E\nfor f in sys.argv[1:]: E.parse(f)', ...files], { encoding: 'utf8' });
  assert.equal(xml.status, 0, `not well-formed XML: ${xml.stderr}`);
  const terminals = readFileSync(files[0]!, 'utf8');
  assert.match(terminals, /<context name="confmux-terminals">/);
  assert.doesNotMatch(terminals, /<context name="default">/, 'no second default context shadowing the stock one');
  const rooms = readFileSync(files[1]!, 'utf8');
  assert.match(rooms, /<extension name="confmux-rooms">/);
  assert.match(rooms, /conference_member_flags=join-vid-floor/, 'content legs take the video floor');
  assert.doesNotMatch(rooms, /<context/);
  const profile = readFileSync(files[3]!, 'utf8');
  assert.match(profile, /<profile name="confmux">/);
  assert.match(profile, /<param name="sip-ip" value="127\.0\.0\.1"\/>/);
  assert.equal(mode(files[3]!), 0o640);
  const esl = readFileSync(files[2]!, 'utf8');
  assert.ok(esl.includes(`<param name="password" value="${ESL_SECRET}"/>`));
  assert.match(esl, /<param name="listen-ip" value="127\.0\.0\.1"\/>/);
  assert.equal(mode(files[2]!), 0o640);
  const backups = spawnSync('sh', ['-c', `ls '${p('freeswitch', 'autoload_configs')}' | grep -c '^event_socket.conf.xml\\..*~$'`], { encoding: 'utf8' });
  assert.equal(backups.stdout.trim(), '1', 'the stock event_socket.conf.xml is kept as a backup');
  assert.deepEqual(readFileSync(p('fs_cli.log'), 'utf8').trim().split('\n'), ['reloadxml', 'sofia profile confmux start']);
});

test('second run: nothing changed, no include added twice, no reload asked for again, no secret shown', { skip, timeout: 150_000 }, () => {
  assert.ok(firstRun, 'first run');
  const rxBefore = readFileSync(p('asterisk-rx.log'), 'utf8');
  const r = playbook([]);
  assertRunOk(r, 'second run');
  assert.equal(r.recap.changed, 0, `the second run changed something:\n${r.out.split('\n').filter((l) => l.startsWith('changed:') || l.startsWith('TASK')).join('\n')}`);
  assertNoSecret(r.out, 'the second run');
  for (const name of ['http', 'ari', 'sorcery', 'confbridge', 'extensions', 'pjsip']) {
    assert.equal(count(readFileSync(p('asterisk', `${name}.conf`), 'utf8'), `#include ${name}_confmux.conf`), 1, `${name}.conf`);
  }
  assert.equal(readFileSync(p('asterisk-rx.log'), 'utf8'), rxBefore);
  assert.deepEqual(readFileSync(p('fs_cli.log'), 'utf8').trim().split('\n'), ['reloadxml', 'sofia profile confmux start']);
});

test('a native build that fails does not fail the role (the bridge then relays audio in JavaScript)', { skip, timeout: 120_000 }, () => {
  assert.ok(firstRun, 'first run');
  // as if a new release came with other pump sources, and the build failed
  unlinkSync(p('opt', 'confmux', 'native/build/Release/confmux_pump.sources'));
  const r = playbook(['--tags', 'release', '-e', 'confmux_native_build_cmd=false']);
  assertRunOk(r, 'run with a failing native build');
  assert.match(r.out, /WARNING: the native media pump did not build \(rc 1\)/);
  assertNoSecret(r.out, 'the native-build run');
});

test('a PBX file that defines a snippet\'s section already is refused before anything is written', { skip, timeout: 120_000 }, () => {
  assert.ok(firstRun, 'first run');
  // another operator's Asterisk: its sorcery.conf maps res_pjsip itself
  const other = p('asterisk-other');
  mkdirSync(other);
  for (const [file, text] of Object.entries(PBX_FILES)) if (file.startsWith('asterisk/')) writeFileSync(join(other, file.slice('asterisk/'.length)), text);
  const sorcery = '[res_pjsip]\nendpoint = realtime,ps_endpoints\n';
  writeFileSync(join(other, 'sorcery.conf'), sorcery);
  const r = playbook(['--tags', 'asterisk', '-e', `confmux_asterisk_config_dir=${other}`]);
  assert.notEqual(r.status, 0, 'the run should fail');
  assert.match(r.out, /sorcery\.conf defines res_pjsip already: merge dialplan\/asterisk\/sorcery\.conf by hand and drop sorcery from confmux_asterisk_snippets/);
  assert.equal(readFileSync(join(other, 'sorcery.conf'), 'utf8'), sorcery);
  assert.equal(readFileSync(join(other, 'extensions.conf'), 'utf8'), PBX_FILES['asterisk/extensions.conf'], 'nothing written to the other files either');
  assert.ok(!existsSync(join(other, 'extensions_confmux.conf')));
  assertNoSecret(r.out, 'the refused run');
  assert.ok(!r.out.includes(Buffer.from(sorcery).toString('base64')) && !r.out.includes('ps_endpoints'), 'the PBX file\'s content is not shown');
});

test('the installed bridge starts as the service user from the installed tree; /healthz answers', { skip, timeout: 60_000 }, async () => {
  assert.ok(firstRun, 'first run');
  const install = p('opt', 'confmux');
  const child = spawn(process.execPath, [join(install, 'bin/confmux.mjs'), 'serve', '--config', p('etc', 'confmux', 'config.json')], {
    cwd: '/',
    uid: idOf('-u'),
    gid: idOf('-g'),
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: p('var', 'lib', 'confmux') },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout.on('data', (b: Buffer) => (output += b.toString()));
  child.stderr.on('data', (b: Buffer) => (output += b.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  try {
    const deadline = Date.now() + 30_000;
    while (!/"msg":"listening"/.test(output)) {
      assert.ok(Date.now() < deadline, `the bridge did not start:\n${output}`);
      assert.equal(child.exitCode, null, `the bridge exited:\n${output}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    // ARI points at a port nobody listens on: the bridge serves, and /healthz says the PBX is down
    // (503 until the media server link is up; 200 with "pbx":"up" once it is)
    const res = await fetch(`http://127.0.0.1:${bridgePort}/healthz`);
    const body = (await res.json()) as { status: string; mediaServer: string; pbx: string; terminals: number };
    assert.equal(res.status, 503);
    assert.deepEqual({ status: body.status, mediaServer: body.mediaServer, pbx: body.pbx, terminals: body.terminals }, { status: 'degraded', mediaServer: 'asterisk', pbx: 'down', terminals: 0 });
    // the terminal page comes from the installed tree too (esbuild from node_modules, as the service user)
    const page = await fetch(`http://127.0.0.1:${bridgePort}/`);
    assert.equal(page.status, 200);
    assert.doesNotMatch(output, /native media pump not available/, 'the pump the role built is loaded');
    assert.match(output, /"build":"bundle"/, 'the bundle the role built runs, without the TypeScript loader');
  } finally {
    child.kill('SIGTERM');
  }
  // SIGTERM drains (shutdown.drainTimeoutMs 1000) and exits 0
  assert.equal(await exited, 0, output);
  assertNoSecret(output, 'the bridge\'s log');
});
