// The operator's dashboard in a real browser (Debian's /usr/bin/chromium, headless,
// driven by playwright-core) against a real stack started by stack.sh.
//
//   node dashboard_test.mjs BUILD_DIR ARTIFACT_DIR small
//     every site and bridge link of the stack is drawn; an agent process SIGKILLed by
//     the test shows dead on screen within 5 s (pushed by GET /api/v1/events) and is
//     listed in the offline operation table; a workload
//     submitted through the form shows the node it went to and the reason, as the REST
//     API has them; a node's detail lists its gauges, agent.outbox_records among them.
//   node dashboard_test.mjs BUILD_DIR ARTIFACT_DIR attach API TOKEN NODE PIDS
//     a stack already running (scripts/run.sh's demo, tests/integration/run_script_test.sh):
//     every site and link of GET /api/v1/sites drawn, the header's node and alive counts
//     those of GET /api/v1/nodes; then node NODE's processes (PIDS, comma-separated: its
//     launcher first, so nothing restarts the agent) SIGKILLed by the test show on screen
//     within 5 s (one fewer alive, its site red), and a workload submitted through the
//     form shows the node it went to and the reason, as the REST API has them.
//   node dashboard_test.mjs BUILD_DIR ARTIFACT_DIR scale [N]
//     N (10,000) simulated nodes: the topology and the node count are drawn and a site's
//     nodes are listed after a click within 2 s of navigation start (measured in the
//     page, printed).
// Screenshots go to ARTIFACT_DIR. Exit 0 when every check held, 1 naming the first that
// did not.
import { spawn } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

const [build, artifacts, mode = 'small', count = '10000'] = process.argv.slice(2);
if (!build || !artifacts || !['small', 'scale', 'attach'].includes(mode)) {
  console.error('usage: dashboard_test.mjs BUILD_DIR ARTIFACT_DIR small|scale [N]|attach API TOKEN NODE PIDS');
  process.exit(2);
}
mkdirSync(artifacts, { recursive: true });
// playwright-core is installed in the build tree (the dashboard_setup test: npm ci), not
// beside this file.
const { chromium } = createRequire(join(build, 'tests', 'dashboard', 'package.json'))('playwright-core');
const here = dirname(fileURLToPath(import.meta.url));
const say = (...a) => console.log('dashboard_test:', ...a);
function check(ok, what) {
  if (!ok) throw new Error('check failed: ' + what);
  say('ok:', what);
}

// Starts stack.sh and resolves with its key=value lines once it prints "ready".
function startStack() {
  const work = join(artifacts, mode + '-stack');
  const child = spawn(join(here, 'stack.sh'), [build, work, mode, ...(mode === 'scale' ? [count] : [])],
                      { stdio: ['ignore', 'pipe', 'inherit'] });
  return new Promise((resolve, reject) => {
    const info = { child };
    createInterface({ input: child.stdout }).on('line', line => {
      if (line === 'ready') resolve(info);
      const eq = line.indexOf('=');
      if (eq > 0) info[line.slice(0, eq)] = line.slice(eq + 1);
    });
    child.on('exit', code => reject(new Error('stack.sh exited with ' + code + ' before it was ready')));
  });
}

async function api(stack, path) {
  const r = await fetch(stack.api + path, { headers: { Authorization: 'Bearer ' + stack.token } });
  if (!r.ok) throw new Error(path + ': HTTP ' + r.status);
  return r.json();
}

// Every site of GET /api/v1/sites has its box, and every one below the root its link to
// its parent, drawn in the "up" colour.
async function sitesDrawn(page, sites) {
  for (const s of sites) {
    await page.waitForSelector(`#topo-svg [data-site="${s.path}"]`, { timeout: 5000 });
    if (!s.parent) continue;
    // A straight vertical path has no width: attached, and its stroke is the "up" colour.
    const link = await page.waitForSelector(`#topo-svg [data-link="${s.path}"][data-state="up"]`, { state: 'attached', timeout: 5000 });
    const stroke = await link.evaluate(e => getComputedStyle(e).stroke);
    check(stroke === 'rgb(46, 157, 79)', `the link of ${s.path} is drawn green (${stroke})`);
  }
  check(true, 'every site and its bridge link to its parent are drawn, links up');
}

// A workload through the form: where it went and why, as the REST API has it; never to
// `dead`, the node the test killed.
async function submitThroughForm(stack, page, id, dead) {
  await page.fill('#submit-form input[name=workload_id]', id);
  await page.fill('#submit-form input[name=argv]', '/bin/sh -c true');
  await page.fill('#submit-form input[name=cpu_millis]', '0');
  await page.fill('#submit-form input[name=memory_mb]', '16');
  await page.click('#submit-form button[type=submit]');
  await page.waitForSelector('#submit-result.placed #submit-node', { timeout: 10000 });
  const node = await page.textContent('#submit-node');
  const reason = await page.textContent('#submit-reason');
  const w = await api(stack, '/api/v1/workloads/' + id);
  check(w.placement && w.placement.node === node, `the form shows the placement's node (${node})`);
  check(node !== dead, `the dead node ${dead} got nothing`);
  const history = w.history || [];
  check(reason && reason === history[history.length - 1].reason, `the form shows the placement's reason ("${reason}")`);
  await page.waitForSelector(`#workloads-body [data-workload="${id}"]`, { timeout: 5000 });
}

async function small(stack, page) {
  await page.goto(stack.api + '/#token=' + stack.token);
  const sites = (await api(stack, '/api/v1/sites')).sites;
  check(sites.length === 4, 'the stack has 4 sites (' + sites.map(s => s.path).join(', ') + ')');
  await sitesDrawn(page, sites);
  await page.waitForSelector('#nodes-list [data-node="dev-1"][data-liveness="alive"]', { timeout: 5000 });
  await page.screenshot({ path: join(artifacts, 'small-topology.png'), fullPage: true });

  // An agent killed outright: its broker fires the will, nova-cloud marks it dead, the
  // event reaches the page.
  const killed = Date.now();
  process.kill(Number(stack['pid_dev-1']), 'SIGKILL');
  await page.waitForSelector('#nodes-list [data-node="dev-1"][data-liveness="dead"]', { timeout: 5000 });
  await page.waitForSelector('#topo-svg [data-site="cloud/eu/par/par-a1"][data-health="bad"]', { timeout: 5000 });
  const shown = Date.now() - killed;
  say(`figure: dev-1 SIGKILLed -> shown dead in the node list and its site red after ${shown} ms`);
  check(shown <= 5000, 'a SIGKILLed agent shows dead within 5 s');
  // Offline operation: dev-1 listed with its time away (GET /api/v1/offline).
  await page.waitForSelector('#offline-body [data-offline="dev-1"]', { timeout: 5000 });
  const away = await page.textContent('#offline-body [data-offline="dev-1"]');
  check(/dead/.test(away), `the offline table lists dev-1 dead ("${away.replace(/\s+/g, ' ').trim()}")`);
  await page.screenshot({ path: join(artifacts, 'small-node-dead.png'), fullPage: true });

  await submitThroughForm(stack, page, 'dash-w1', 'dev-1');
  await page.screenshot({ path: join(artifacts, 'small-submitted.png'), fullPage: true });

  // A node's detail: every gauge its samples carry, the agent's outbox gauges among them
  // (its first 10 s batch may still be on its way: the detail reloads every 5 s).
  await page.click('#nodes-list .row[data-node="agent-eu"]');
  await page.waitForSelector('#node-detail [data-gauge="agent.outbox_records"]', { timeout: 20000 });
  check(await page.$('#node-detail [data-gauge="cpu"]') !== null, "agent-eu's detail lists cpu and agent.outbox_records");
  await page.screenshot({ path: join(artifacts, 'small-node-detail.png'), fullPage: true });
}

async function attach(stack, page) {
  await page.goto(stack.api + '/#token=' + stack.token);
  await sitesDrawn(page, (await api(stack, '/api/v1/sites')).sites);
  const nodes = await api(stack, '/api/v1/nodes');
  const alive = nodes.filter(n => n.liveness === 'alive').length;
  await page.waitForFunction(([n, a]) => document.getElementById('h-nodes').textContent === String(n) &&
                                         document.getElementById('h-alive').textContent === String(a), [nodes.length, alive], { timeout: 5000 });
  check(true, `the header counts ${nodes.length} nodes, ${alive} alive, as GET /api/v1/nodes`);
  await page.waitForSelector('#nodes-list .row[data-node]', { timeout: 5000 });
  await page.screenshot({ path: join(artifacts, 'attach.png'), fullPage: true });

  // One node killed outright, launcher first: the list may not show its row (30 nodes,
  // virtualised), so the header's alive count and its site's colour say it.
  const victim = nodes.find(n => n.id === stack.node);
  check(victim && victim.liveness === 'alive', `${stack.node} is alive before the kill`);
  const before = await page.$eval(`#topo-svg [data-site="${victim.site}"]`, e => e.getAttribute('data-health'));
  check(before !== 'bad', `${victim.site} is not red before the kill (${before})`);
  const killed = Date.now();
  for (const pid of stack.pids) process.kill(pid, 'SIGKILL');
  await page.waitForFunction(a => document.getElementById('h-alive').textContent === String(a), alive - 1, { timeout: 5000 });
  await page.waitForSelector(`#topo-svg [data-site="${victim.site}"][data-health="bad"]`, { state: 'attached', timeout: 5000 });
  const shown = Date.now() - killed;
  say(`figure: ${stack.node} SIGKILLed -> one fewer alive and its site red after ${shown} ms`);
  check(shown <= 5000, 'a SIGKILLed node of the demo shows offline within 5 s');
  await page.screenshot({ path: join(artifacts, 'attach-node-dead.png'), fullPage: true });

  await submitThroughForm(stack, page, 'dash-demo', stack.node);
  await page.screenshot({ path: join(artifacts, 'attach-submitted.png'), fullPage: true });
}

async function scale(stack, page) {
  const n = Number(count);
  await page.goto(stack.api + '/#token=' + stack.token);
  // Measured in the page, from navigation start (performance.now()).
  await page.waitForFunction(expected => document.getElementById('h-nodes').textContent === String(expected) &&
                                         document.querySelectorAll('#topo-svg [data-site]').length > 0, n, { timeout: 10000 });
  const drawn = await page.evaluate(() => performance.now());
  const site = 'cloud/r0/m0/a0';
  // The access row (80 sites) is folded into the metros: drill down through one.
  await page.click('#topo-svg [data-site="cloud/r0/m0"]');
  await page.waitForSelector(`#topo-svg [data-site="${site}"]`, { timeout: 10000 });
  await page.click(`#topo-svg [data-site="${site}"]`);
  await page.waitForSelector('#nodes-list .row[data-node]', { timeout: 10000 });
  const usable = await page.evaluate(() => performance.now());
  const rows = await page.$$eval('#nodes-list .row[data-node]', r => r.length);
  const listed = await page.textContent('#nodes-count');
  say(`figure: ${n} nodes: topology and node count drawn ${drawn.toFixed(0)} ms, a site's nodes listed after drill-down ${usable.toFixed(0)} ms after navigation start; ${rows} rows in the DOM for "${listed}"`);
  await page.screenshot({ path: join(artifacts, 'scale-drilldown.png'), fullPage: false });
  check(rows < 100, 'the node list is virtualised (only the rows in view exist)');
  check(listed.startsWith(String(Math.ceil(n / 80)) + ' of ' + n) || listed.startsWith(String(Math.floor(n / 80)) + ' of ' + n),
        `the drilled-down site lists its own nodes ("${listed}")`);
  check(usable <= 2000, `usable within 2 s of navigation start (${usable.toFixed(0)} ms)`);
}

let stack = null;
let browser = null;
let page = null;
let status = 0;
try {
  stack = mode === 'attach'
    ? { api: process.argv[5], token: process.argv[6], node: process.argv[7],
        pids: (process.argv[8] || '').split(',').filter(Boolean).map(Number) }
    : await startStack();
  say('stack ready: ' + stack.api);
  browser = await chromium.launch({ executablePath: '/usr/bin/chromium', headless: true, args: ['--no-sandbox'] });
  page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
  page.on('pageerror', e => say('page error:', e.message));
  await ({ small, scale, attach }[mode])(stack, page);
  say('passed');
} catch (e) {
  console.error('dashboard_test: FAILED:', e.message);
  status = 1;
  if (page) await page.screenshot({ path: join(artifacts, mode + '-failed.png'), fullPage: true }).catch(() => {});
} finally {
  if (browser) await browser.close();
  if (stack && stack.child) {
    stack.child.kill('SIGTERM');
    await new Promise(r => stack.child.on('exit', r));
  }
}
process.exit(status);
