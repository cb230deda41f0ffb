// The web console in a real browser. Starts two real OpenID providers (panva's oidc-provider, a
// certified implementation: one per council, each with the gateway registered as a confidential
// client that must use PKCE, and users with the claims the platform reads: roles, agency), the
// platform (embedded mode, trusting each provider as its council's issuer), and drives Debian's
// Chromium with Playwright: sign-in through the provider, the front-door queue and a case page,
// step up and close by keyboard alone, a restricted reader who sees the withheld notices, another
// council's user who gets nothing of this council, a forged form (403, nothing changed), logout
// (RP-initiated), the demo sign-in, and an axe-core scan of every page (no serious or critical
// violation). Screenshots go to target/browser-artefacts/ (EH_ARTEFACTS).
//
// EH_BIN names the earlyhelp binary (default: $CARGO_TARGET_DIR or target, /debug/earlyhelp).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import http2 from 'node:http2';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import Provider from 'oidc-provider';
import { chromium } from 'playwright-core';
import AxeBuilder from '@axe-core/playwright';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '../..');
const bin = process.env.EH_BIN
  || path.join(process.env.CARGO_TARGET_DIR || path.join(root, 'target'), 'debug', 'earlyhelp');
const artefacts = process.env.EH_ARTEFACTS || path.join(root, 'target', 'browser-artefacts');
const chromiumPath = process.env.CHROMIUM || '/usr/bin/chromium';
const CLIENT_ID = 'earlyhelp-console';
const CLIENT_SECRET = crypto.randomBytes(24).toString('hex');
const API_KEY = crypto.randomBytes(24).toString('hex');

// Each council's staff, as its identity provider knows them.
const USERS = {
  worcs: {
    'alice.frontdoor': { name: 'Alice Front Door', roles: ['front_door'], agency: 'council' },
    'bob.support': { name: 'Bob Support', roles: ['business_support'], agency: 'council' },
    'tess.manager': { name: 'Tess Manager', roles: ['team_manager'], agency: 'council' },
    'tom.manager': { name: 'Tom Manager', roles: ['team_manager'], agency: 'council' },
    // A provider's worker: the agency is its organisation's Open Referral UK id.
    'pat.provider': { name: 'Pat Provider', roles: ['provider'], agency: 'worcs-cc' },
  },
  staffs: {
    'carol.frontdoor': { name: 'Carol Front Door', roles: ['front_door'], agency: 'council' },
  },
};

const freePort = () => new Promise((resolve, reject) => {
  const s = net.createServer();
  s.unref();
  s.on('error', reject);
  s.listen(0, '127.0.0.1', () => {
    const { port } = s.address();
    s.close(() => resolve(port));
  });
});

const ctx = { providers: [], servers: [] };
let browser;
let base;
let platform;
let logFile;
let grpcBase;
let worcsIssuer;

async function startProvider(tenant, port, httpPort) {
  const issuer = `http://127.0.0.1:${port}`;
  const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  const jwk = { ...privateKey.export({ format: 'jwk' }), kid: `${tenant}-1`, alg: 'RS256', use: 'sig' };
  const users = USERS[tenant];
  const provider = new Provider(issuer, {
    clients: [{
      client_id: CLIENT_ID,
      client_secret: CLIENT_SECRET,
      redirect_uris: [`http://127.0.0.1:${httpPort}/console/callback`],
      post_logout_redirect_uris: [`http://127.0.0.1:${httpPort}/console/signed-out`],
      grant_types: ['authorization_code'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
      id_token_signed_response_alg: 'RS256',
    }],
    jwks: { keys: [jwk] },
    cookies: { keys: [crypto.randomBytes(16).toString('hex')] },
    pkce: { required: () => true },
    claims: { openid: ['sub'], profile: ['name', 'roles', 'agency'] },
    // The roles and agency travel in the ID token, as the platform reads them.
    conformIdTokenClaims: false,
    features: { devInteractions: { enabled: true }, rpInitiatedLogout: { enabled: true } },
    async findAccount(_ctx, id) {
      const u = users[id];
      if (!u) return undefined;
      return { accountId: id, async claims() { return { sub: id, ...u }; } };
    },
  });
  const server = http.createServer(provider.callback());
  await new Promise((r) => server.listen(port, '127.0.0.1', r));
  ctx.servers.push(server);
  return issuer;
}

function referral(reference, child) {
  return {
    schema: 'earlyhelp.referral.v1',
    source: { system: 'school-mis', reference },
    submitted_at: new Date().toISOString().replace(/\.\d+Z$/, 'Z'),
    route: 'practitioner',
    referrer: { name: 'Priya Shah', role: 'Designated safeguarding lead', agency: 'education', organisation: 'Hillside Primary', email: 'ref@school.example' },
    children: [child],
    family_members: [{ given_name: 'Dana', family_name: child.family_name, relationship: 'mother', parental_responsibility: true, email: 'dana@example.org', safe_to_contact: true }],
    needs: ['education'],
    significant_harm_risk: false,
    consent: { obtained: false },
  };
}

before(async () => {
  fs.mkdirSync(artefacts, { recursive: true });
  assert.ok(fs.existsSync(bin), `the earlyhelp binary is not built: ${bin}`);
  const [httpPort, grpcPort, worcsPort, staffsPort] = await Promise.all([freePort(), freePort(), freePort(), freePort()]);
  base = `http://127.0.0.1:${httpPort}`;
  grpcBase = `http://127.0.0.1:${grpcPort}`;
  const worcs = await startProvider('worcs', worcsPort, httpPort);
  worcsIssuer = worcs;
  const staffs = await startProvider('staffs', staffsPort, httpPort);
  const data = fs.mkdtempSync(path.join(os.tmpdir(), 'eh-browser-'));
  const keyHash = crypto.createHash('sha256').update(API_KEY).digest('hex');
  const council = (id, name, issuer) => `
[tenants.${id}]
name = "${name}"
[tenants.${id}.oidc]
issuer = "${issuer}"
audience = "${CLIENT_ID}"
jwks_url = "${issuer}/jwks"
[tenants.${id}.oidc.client]
client_id = "${CLIENT_ID}"
redirect_url = "${base}/console/callback"
post_logout_redirect_url = "${base}/console/signed-out"
scopes = ["profile"]
[[tenants.${id}.api_keys]]
name = "school-mis"
sha256 = "${keyHash}"
`;
  const config = path.join(data, 'earlyhelp.toml');
  // Worcestershire's directory: one Early Help Team, run for it by organisation worcs-cc.
  const directory = path.join(data, 'directory.json');
  fs.writeFileSync(directory, JSON.stringify([{
    id: 'eht-north', name: 'Early Help Team North', status: 'active',
    organization: { id: 'worcs-cc', name: 'Worcestershire County Council' },
  }]));
  const allocation = `
[tenants.worcs.allocation]
rule_version = "browser-1"
[tenants.worcs.allocation.directory]
file = ${JSON.stringify(directory)}
`;
  fs.writeFileSync(config, council('worcs', 'Worcestershire Test Council', worcs) + allocation
    + council('staffs', 'Staffordshire Test Council', staffs).replace(/sha256 = ".*"/, `sha256 = "${'0'.repeat(64)}"`));
  const assets = path.join(root, 'tools/console/node_modules/govuk-frontend/dist/govuk');
  logFile = path.join(data, 'earlyhelp.log');
  const out = fs.openSync(logFile, 'w');
  platform = spawn(bin, ['run', '--config', config], {
    env: {
      ...process.env,
      EH__DATA_DIR: data,
      EH__SERVER__HTTP_ADDR: `127.0.0.1:${httpPort}`,
      EH__SERVER__GRPC_ADDR: `127.0.0.1:${grpcPort}`,
      EH__GATEWAY__CONSOLE__ASSETS_DIR: assets,
      EH__GATEWAY__CONSOLE__PUBLIC_URL: base,
      // The client secret from the environment, as a deployment gives it.
      EH__TENANTS__WORCS__OIDC__CLIENT__CLIENT_SECRET: CLIENT_SECRET,
      EH__TENANTS__STAFFS__OIDC__CLIENT__CLIENT_SECRET: CLIENT_SECRET,
      RUST_LOG: process.env.RUST_LOG || 'warn,eh_gateway=info',
    },
    stdio: ['ignore', out, out],
  });
  let ready = false;
  for (let i = 0; i < 600 && !ready && platform.exitCode === null; i++) {
    try {
      ready = (await fetch(`${base}/readyz`)).ok;
    } catch { /* not listening yet */ }
    if (!ready) await new Promise((r) => setTimeout(r, 200));
  }
  assert.ok(ready, `earlyhelp did not become ready:\n${fs.readFileSync(logFile, 'utf8').slice(-4000)}`);
  // Two requests for support from the council's school system, as an upstream system sends them.
  for (const [ref, child] of [
    ['BT-STEP', { given_name: 'Leo', family_name: 'Marsh', date_of_birth: '2016-05-14' }],
    ['BT-CLOSE', { given_name: 'Ava', family_name: 'Okafor', date_of_birth: '2018-02-03' }],
  ]) {
    const res = await fetch(`${base}/v1/referrals`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-api-key': API_KEY, 'idempotency-key': ref },
      body: JSON.stringify(referral(ref, child)),
    });
    assert.equal(res.status, 201, await res.text());
  }
  // A family with consent (for withdrawal and the override), and two referrals of one child whose
  // details differ just enough to be left to a practitioner (a possible match).
  const withConsent = referral('BT-CONSENT', { given_name: 'Mia', family_name: 'Reed', date_of_birth: '2017-09-09' });
  withConsent.consent = { obtained: true, given_by: 'Dana Reed', method: 'verbal', date: '2026-11-20' };
  const khan = (reference, child, address) => ({
    ...referral(reference, child),
    family_members: [],
    consent: { obtained: true, method: 'signed', date: '2026-11-20' },
    ...(address ? { address } : {}),
  });
  for (const doc of [
    withConsent,
    khan('BT-MATCH-1', { given_name: 'Ava', family_name: 'Khan', date_of_birth: '2015-03-04', nhs_number: '9434765919' }, { line1: '4 Mill Lane', postcode: 'B60 1AA' }),
    khan('BT-MATCH-2', { given_name: 'Ava', family_name: 'Khan', date_of_birth: '2015-04-03' }),
  ]) {
    const res = await fetch(`${base}/v1/referrals`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-api-key': API_KEY, 'idempotency-key': doc.source.reference },
      body: JSON.stringify(doc),
    });
    assert.equal(res.status, 201, await res.text());
  }
  browser = await chromium.launch({ executablePath: chromiumPath, headless: true, args: ['--no-sandbox'] });
});

after(async () => {
  if (browser) await browser.close();
  for (const s of ctx.servers) s.close();
  if (platform && platform.exitCode === null) {
    platform.kill('SIGTERM');
    await new Promise((r) => platform.once('exit', r));
  }
  if (process.exitCode && logFile) console.error(fs.readFileSync(logFile, 'utf8').slice(-4000));
});

/** Fails on any serious or critical accessibility violation of the page as it is now. */
async function axe(page, name) {
  const results = await new AxeBuilder({ page }).withTags(['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'wcag22aa']).analyze();
  const bad = results.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical');
  assert.deepEqual(bad.map((v) => `${v.id}: ${v.help} (${v.nodes.map((n) => n.target.join(' ')).join(', ')})`), [], `axe on ${name}`);
}

async function shot(page, name) {
  await page.screenshot({ path: path.join(artefacts, `${name}.png`), fullPage: true });
}

/** Presses Tab until the focused element matches `test` (a function run in the page), at most 80 times. */
async function tabTo(page, description, predicate, arg) {
  for (let i = 0; i < 80; i++) {
    await page.keyboard.press('Tab');
    if (await page.evaluate(predicate, arg)) return;
  }
  assert.fail(`could not reach ${description} with the Tab key`);
}
const focusedText = (text) => document.activeElement && document.activeElement.textContent.trim().includes(text);
const focusedName = (name) => document.activeElement && document.activeElement.getAttribute('name') === name;
const focusedId = (id) => document.activeElement && document.activeElement.id === id;

/** Signs in through the council's provider, by keyboard on the console's pages. */
async function signIn(page, council, login) {
  await page.goto(`${base}/console/`);
  assert.match(page.url(), /\/console\/sign-in/);
  await axe(page, 'sign-in');
  await tabTo(page, `the ${council} sign-in link`, focusedText, council);
  await Promise.all([page.waitForURL(/127\.0\.0\.1:\d+\/interaction\//), page.keyboard.press('Enter')]);
  await page.fill('input[name=login]', login);
  await page.fill('input[name=password]', 'any');
  const loginUrl = page.url();
  await page.click('button[type=submit]');
  await page.waitForURL((u) => u.href !== loginUrl && /\/(interaction|console)\//.test(u.href));
  // The provider asks once to share the profile with the console.
  if (/\/interaction\//.test(page.url())) {
    await Promise.all([page.waitForURL(/\/console\/$/), page.click('button[type=submit]')]);
  }
  await page.waitForURL(/\/console\/$/);
}

/** The queue, reloaded until it lists `n` open cases or more (casework opens them from events). */
/** The case page of `reference`, reached from the queue by keyboard once casework lists it. */
async function caseByKeyboard(page, reference) {
  for (let i = 0; i < 150; i++) {
    await page.goto(`${base}/console/`);
    if (await page.getByText(reference).count()) break;
    await new Promise((r) => setTimeout(r, 200));
  }
  // An open case by keyboard from the queue; a closed one from the queue's closed list.
  const closedLink = page.locator('details.govuk-details a', { hasText: reference });
  if (await closedLink.count()) {
    await page.goto(new URL(await closedLink.getAttribute('href'), base).href);
    return;
  }
  await tabTo(page, `the ${reference} case`, focusedText, reference);
  await Promise.all([page.waitForURL(/\/console\/cases\/[^/]+$/), page.keyboard.press('Enter')]);
}

const focusedButton = (t) => document.activeElement?.tagName === 'BUTTON' && document.activeElement.textContent.trim() === t;
const focusedIdPrefix = (p) => document.activeElement && document.activeElement.id.startsWith(p);

async function queueWith(page, n) {
  for (let i = 0; i < 150; i++) {
    await page.goto(`${base}/console/`);
    if ((await page.locator('table.govuk-table tbody tr').count()) >= n) return;
    await new Promise((r) => setTimeout(r, 200));
  }
  assert.fail(`the queue did not list ${n} cases`);
}

let stepCaseUrl;
let closeCaseUrl;

test('a front-door officer signs in through the provider, works the queue and cases by keyboard', async () => {
  const context = await browser.newContext();
  const page = await context.newPage();
  await signIn(page, 'Worcestershire Test Council', 'alice.frontdoor');
  const cookies = await context.cookies();
  const session = cookies.find((c) => c.name === 'eh-session');
  assert.ok(session, 'a session cookie');
  assert.equal(session.httpOnly, true);
  assert.equal(session.sameSite, 'Lax');

  await queueWith(page, 2);
  const res = await page.goto(`${base}/console/`);
  const h = res.headers();
  assert.match(h['content-security-policy'], /default-src 'self'/);
  assert.doesNotMatch(h['content-security-policy'], /unsafe-inline/);
  assert.match(h['content-security-policy'], /frame-ancestors 'none'/);
  assert.equal(h['x-frame-options'], 'DENY');
  assert.equal(h['cache-control'], 'no-store');
  assert.equal(h['referrer-policy'], 'no-referrer');
  await assert.doesNotReject(page.getByRole('heading', { name: 'Front door queue' }).waitFor());
  await axe(page, 'queue');
  await shot(page, 'queue');

  // The case page, reached by keyboard from the queue.
  await tabTo(page, 'the BT-STEP case', focusedText, 'BT-STEP');
  await Promise.all([page.waitForURL(/\/console\/cases\//), page.keyboard.press('Enter')]);
  stepCaseUrl = page.url();
  const body = await page.textContent('main');
  assert.match(body, /Awaiting consent/);
  assert.match(body, /Leo Marsh/, 'the front door sees the children');
  assert.match(body, /Timeline/);
  assert.doesNotMatch(body, /withheld/i);
  await axe(page, 'case');
  await shot(page, 'case');

  // Step up: first with no reason (the error summary), then with one, by keyboard alone.
  await tabTo(page, 'the Step up button', focusedText, 'Step up');
  await Promise.all([page.waitForURL(/\/step-up$/), page.keyboard.press('Enter')]);
  await axe(page, 'step-up form');
  await tabTo(page, 'the Step up submit button', (t) => document.activeElement?.tagName === 'BUTTON' && document.activeElement.textContent.trim() === t, 'Step up');
  await Promise.all([page.waitForLoadState(), page.keyboard.press('Enter')]);
  await page.locator('.govuk-error-summary').waitFor();
  assert.match(await page.title(), /^Error:/);
  await axe(page, 'step-up form with an error');
  await shot(page, 'step-up-error');
  await tabTo(page, 'the reason', focusedName, 'reason');
  await page.keyboard.type('Disclosure at school today; the front door must see the family now.');
  await tabTo(page, 'the Step up submit button', (t) => document.activeElement?.tagName === 'BUTTON' && document.activeElement.textContent.trim() === t, 'Step up');
  await Promise.all([page.waitForURL(/done=stepped-up/), page.keyboard.press('Enter')]);
  assert.match(await page.textContent('main'), /stepped up to the front door/);
  assert.match(await page.textContent('h1'), /Stepped up/);
  await axe(page, 'case after step-up');

  // A forged form (no CSRF token) is refused and changes nothing.
  await page.goto(`${base}/console/`);
  await tabTo(page, 'the BT-CLOSE case', focusedText, 'BT-CLOSE');
  await Promise.all([page.waitForURL(/\/console\/cases\//), page.keyboard.press('Enter')]);
  closeCaseUrl = page.url();
  const forged = await context.request.post(`${closeCaseUrl}/close`, {
    form: { outcome: 'closed_advice_given', reason: 'forged' }, maxRedirects: 0,
  });
  assert.equal(forged.status(), 403);
  const wrong = await context.request.post(`${closeCaseUrl}/close`, {
    form: { csrf: 'not-the-token', outcome: 'closed_advice_given', reason: 'forged' }, maxRedirects: 0,
  });
  assert.equal(wrong.status(), 403);
  await page.reload();
  assert.match(await page.textContent('h1'), /Awaiting consent/, 'nothing changed');

  // Close, by keyboard: a radio chosen with the arrow keys' neighbour Space, the reasons typed.
  await tabTo(page, 'Close the case', focusedText, 'Close the case');
  await Promise.all([page.waitForURL(/\/close$/), page.keyboard.press('Enter')]);
  await axe(page, 'close form');
  await shot(page, 'close-form');
  await tabTo(page, 'the first outcome', focusedId, 'outcome');
  await page.keyboard.press('Space');
  await tabTo(page, 'the reasons', focusedName, 'reason');
  await page.keyboard.type('Advice given to the school; the family did not want Early Help.');
  await tabTo(page, 'the Close submit button', (t) => document.activeElement?.tagName === 'BUTTON' && document.activeElement.textContent.trim() === t, 'Close the case');
  await Promise.all([page.waitForURL(/done=closed/), page.keyboard.press('Enter')]);
  assert.match(await page.textContent('h1'), /Closed advice given/);

  // Possible matches (none to decide here): the page and its scan.
  await page.goto(`${base}/console/matches`);
  assert.match(await page.textContent('main'), /Possible matches/);
  await axe(page, 'matches');
  await shot(page, 'matches');

  // Sign out, by keyboard: the provider's end-session page, then the console's signed-out page.
  await tabTo(page, 'Sign out', focusedText, 'Sign out');
  await Promise.all([page.waitForURL(/\/session\/end/), page.keyboard.press('Enter')]);
  await Promise.all([page.waitForURL(/\/console\/signed-out/), page.click('button[name=logout]')]);
  await axe(page, 'signed out');
  await page.goto(`${base}/console/`);
  assert.match(page.url(), /\/console\/sign-in/, 'the session ended');
  await context.close();
});

test('a restricted reader sees the withheld notices', async () => {
  assert.ok(stepCaseUrl, 'the first test found the case');
  const context = await browser.newContext();
  const page = await context.newPage();
  await signIn(page, 'Worcestershire Test Council', 'bob.support');
  await page.goto(stepCaseUrl);
  const body = await page.textContent('main');
  assert.match(body, /family's details are withheld/i);
  assert.match(body, /Consent is withheld/i);
  assert.doesNotMatch(body, /Leo Marsh/);
  assert.match(body, /Timeline/, 'what the role may see is shown');
  await axe(page, 'case as a restricted reader');
  await shot(page, 'case-withheld');
  await context.close();
});

test("another council's user gets nothing of this council", async () => {
  const context = await browser.newContext();
  const page = await context.newPage();
  await signIn(page, 'Staffordshire Test Council', 'carol.frontdoor');
  const queue = await page.textContent('main');
  assert.doesNotMatch(queue, /BT-STEP|BT-CLOSE/);
  const res = await page.goto(stepCaseUrl);
  assert.equal(res.status(), 404);
  const body = await page.textContent('main');
  assert.match(body, /Case not found/);
  assert.doesNotMatch(body, /Leo|Marsh|BT-STEP/);
  await axe(page, 'case of another council');
  await context.close();
});

test('the demo sign-in needs no set-up', async () => {
  const context = await browser.newContext();
  const page = await context.newPage();
  await page.goto(`${base}/console/sign-in`);
  await tabTo(page, 'the demo sign-in link', focusedText, 'Sign in as a demo user');
  await Promise.all([page.waitForURL(/\/console\/demo/), page.keyboard.press('Enter')]);
  await axe(page, 'demo sign-in');
  await tabTo(page, 'the first demo user', focusedId, 'user');
  await tabTo(page, 'the Sign in button', (t) => document.activeElement?.tagName === 'BUTTON' && document.activeElement.textContent.trim() === t, 'Sign in');
  await Promise.all([page.waitForURL(/\/console\/$/), page.keyboard.press('Enter')]);
  assert.match(await page.textContent('body'), /Demo Borough Council/);
  await shot(page, 'demo-queue');
  await context.close();
});

test('a sign-in answer that is not this browser\'s is refused', async () => {
  const context = await browser.newContext();
  const page = await context.newPage();
  const res = await page.goto(`${base}/console/callback?code=abc&state=forged`);
  assert.equal(res.status(), 400);
  assert.match(await page.textContent('main'), /could not be signed in/);
  await axe(page, 'sign-in refused');
  await context.close();
});

test('possible matches: a candidate is rejected by keyboard alone', async () => {
  const context = await browser.newContext();
  const page = await context.newPage();
  await signIn(page, 'Worcestershire Test Council', 'alice.frontdoor');
  for (let i = 0; i < 150; i++) {
    await page.goto(`${base}/console/matches`);
    if (await page.locator('.govuk-summary-card').count()) break;
    await new Promise((r) => setTimeout(r, 200));
  }
  const main = await page.textContent('main');
  assert.match(main, /Ava Khan may be Ava Khan/);
  assert.match(main, /Date of birth \(transposed\)/i);
  await axe(page, 'matches with a candidate');
  await shot(page, 'matches-candidate');
  // The first radio ("Yes"), then the arrow key to "No, reject it", the reason, the button.
  await tabTo(page, 'the first decision radio', focusedIdPrefix, 'decision-');
  await page.keyboard.press('ArrowDown');
  assert.equal(await page.evaluate(() => document.activeElement.value), 'reject');
  await tabTo(page, 'the reason', focusedName, 'reason');
  await page.keyboard.type('Different child: another school and date of birth.');
  await tabTo(page, 'Save the decision', focusedButton, 'Save the decision');
  await Promise.all([page.waitForURL(/done=reject/), page.keyboard.press('Enter')]);
  assert.match(await page.textContent('main'), /The match was rejected/);
  assert.match(await page.textContent('main'), /There are no possible matches to decide/);
  await axe(page, 'matches after a decision');
  await context.close();
});

test('the two-person safeguarding override: one manager asks, another approves, by keyboard', async () => {
  // Tess asks.
  let context = await browser.newContext();
  let page = await context.newPage();
  await signIn(page, 'Worcestershire Test Council', 'tess.manager');
  await caseByKeyboard(page, 'BT-CONSENT');
  await tabTo(page, 'the override link', focusedText, 'Safeguarding overrides for this family');
  await Promise.all([page.waitForURL(/\/override$/), page.keyboard.press('Enter')]);
  await axe(page, 'override');
  await shot(page, 'override-form');
  // Sent empty first: the errors, each linked to its field.
  await tabTo(page, 'Ask for approval', focusedButton, 'Ask for approval');
  await Promise.all([page.waitForLoadState(), page.keyboard.press('Enter')]);
  await page.locator('.govuk-error-summary').waitFor();
  assert.match(await page.title(), /^Error:/);
  await axe(page, 'override with errors');
  await tabTo(page, 'the legal basis', focusedName, 'legal_basis');
  await page.keyboard.type('Children Act 1989 s47');
  await tabTo(page, 'the reasons', focusedName, 'reasoning');
  await page.keyboard.type('Disclosure at school; asking the parents first would put Mia at risk.');
  await tabTo(page, 'the first agency', focusedId, 'agencies');
  await page.keyboard.press('Space');
  await tabTo(page, 'the first category', focusedId, 'categories');
  await page.keyboard.press('Space');
  await tabTo(page, 'the first purpose', focusedId, 'purposes');
  await page.keyboard.press('Space');
  await tabTo(page, 'the days', focusedName, 'days');
  await page.keyboard.type('7');
  await tabTo(page, 'Ask for approval', focusedButton, 'Ask for approval');
  await Promise.all([page.waitForURL(/done=requested/), page.keyboard.press('Enter')]);
  const asked = await page.textContent('main');
  assert.match(asked, /You asked for this override\. A different person, a team manager, must approve it\./);
  assert.equal(await page.getByRole('button', { name: 'Approve the override' }).count(), 0, 'the asker cannot approve');
  await axe(page, 'override requested');
  await shot(page, 'override-requested');
  const overrideUrl = page.url().replace(/\?.*$/, '');
  await context.close();

  // Bob, a restricted reader, sees that it is withheld, and nothing of it.
  context = await browser.newContext();
  page = await context.newPage();
  await signIn(page, 'Worcestershire Test Council', 'bob.support');
  await page.goto(overrideUrl);
  const withheld = await page.textContent('main');
  assert.match(withheld, /consent and overrides are withheld/i);
  assert.doesNotMatch(withheld, /Children Act|Disclosure at school/);
  await axe(page, 'override as a restricted reader');
  await page.goto(`${base}/console/override-requests`);
  assert.match(await page.textContent('main'), /Only a team manager approves/);
  await axe(page, 'override requests as a restricted reader');
  await context.close();

  // Tom approves, from his list, by keyboard.
  context = await browser.newContext();
  page = await context.newPage();
  await signIn(page, 'Worcestershire Test Council', 'tom.manager');
  await tabTo(page, 'Overrides to approve', focusedText, 'Overrides to approve');
  await Promise.all([page.waitForURL(/\/console\/override-requests$/), page.keyboard.press('Enter')]);
  assert.match(await page.textContent('main'), /tess\.manager/);
  await axe(page, 'override requests');
  await shot(page, 'override-requests');
  await tabTo(page, 'the request', focusedText, 'Override request for case');
  await Promise.all([page.waitForURL(/\/override#waiting$/), page.keyboard.press('Enter')]);
  await tabTo(page, 'Approve the override', focusedButton, 'Approve the override');
  await Promise.all([page.waitForURL(/done=granted/), page.keyboard.press('Enter')]);
  const granted = await page.textContent('main');
  assert.match(granted, /The override was granted/);
  assert.match(granted, /Children Act 1989 s47/);
  assert.match(granted, /tom\.manager/);
  await axe(page, 'override granted');
  await shot(page, 'override-granted');
  await context.close();
});

test('consent is withdrawn by keyboard alone', async () => {
  const context = await browser.newContext();
  const page = await context.newPage();
  await signIn(page, 'Worcestershire Test Council', 'alice.frontdoor');
  await caseByKeyboard(page, 'BT-CONSENT');
  assert.match(await page.textContent('main'), /Dana Reed/);
  await tabTo(page, 'Withdraw this consent', focusedText, 'Withdraw this consent');
  await Promise.all([page.waitForURL(/\/withdraw$/), page.keyboard.press('Enter')]);
  await axe(page, 'withdraw consent');
  await shot(page, 'withdraw-consent');
  await tabTo(page, 'Withdraw consent', focusedButton, 'Withdraw consent');
  await Promise.all([page.waitForLoadState(), page.keyboard.press('Enter')]);
  await page.locator('.govuk-error-summary').waitFor();
  assert.match(await page.textContent('.govuk-error-summary'), /Enter why the consent is withdrawn/);
  await axe(page, 'withdraw consent with an error');
  await tabTo(page, 'the reason', focusedName, 'reason');
  await page.keyboard.type('Dana Reed withdrew consent by phone this morning.');
  await tabTo(page, 'Withdraw consent', focusedButton, 'Withdraw consent');
  await Promise.all([page.waitForURL(/done=consent-withdrawn/), page.keyboard.press('Enter')]);
  const body = await page.textContent('main');
  assert.match(body, /The consent was withdrawn/);
  assert.doesNotMatch(body, /Withdraw this consent/, 'nothing left to withdraw');
  await axe(page, 'case after withdrawal');
  await shot(page, 'case-consent-withdrawn');
  await context.close();
});

test('offers: the page for those who may answer, withheld for others', async () => {
  let context = await browser.newContext();
  let page = await context.newPage();
  await signIn(page, 'Worcestershire Test Council', 'tom.manager');
  await tabTo(page, 'Offers', focusedText, 'Offers');
  await Promise.all([page.waitForURL(/\/console\/offers$/), page.keyboard.press('Enter')]);
  assert.match(await page.textContent('main'), /Offers to answer/);
  assert.doesNotMatch(await page.textContent('main'), /withheld/);
  await axe(page, 'offers');
  await shot(page, 'offers');
  await context.close();
  context = await browser.newContext();
  page = await context.newPage();
  await signIn(page, 'Worcestershire Test Council', 'bob.support');
  await page.goto(`${base}/console/offers`);
  assert.match(await page.textContent('main'), /Offers are withheld/);
  await axe(page, 'offers withheld');
  await context.close();
});

// ---- offers answered by a provider -------------------------------------------------------------

/** An ID token of `login`, from the council's provider by the console's own client (code flow
 * with PKCE, the code read from the redirect's address): for the set-up the console does
 * not offer (the directory's import and a service's terms, allocation's gRPC methods). */
async function idToken(issuer, login) {
  const b64url = (b) => b.toString('base64url');
  const verifier = b64url(crypto.randomBytes(32));
  const challenge = b64url(crypto.createHash('sha256').update(verifier).digest());
  const redirect = `${base}/console/callback`;
  const context = await browser.newContext();
  const page = await context.newPage();
  // The provider's redirect lands on the console's callback, which refuses it (the state is not
  // one of its sign-ins) and leaves the code unused: the code is read from the address.
  const codeOf = () => {
    const u = new URL(page.url());
    return u.href.startsWith(`${redirect}?`) ? u.searchParams.get('code') : null;
  };
  let code;
  const auth = new URL(`${issuer}/auth`);
  for (const [k, v] of Object.entries({
    client_id: CLIENT_ID, response_type: 'code', scope: 'openid profile', redirect_uri: redirect,
    state: b64url(crypto.randomBytes(8)), code_challenge: challenge, code_challenge_method: 'S256',
  })) auth.searchParams.set(k, v);
  await page.goto(auth.href);
  await page.fill('input[name=login]', login);
  await page.fill('input[name=password]', 'any');
  await page.click('button[type=submit]');
  for (let i = 0; i < 100 && !(code = codeOf()); i++) {
    if (/\/interaction\/[^/]+$/.test(page.url()) && await page.locator('button[type=submit]').count()
      && !(await page.locator('input[name=login]').count())) {
      await page.click('button[type=submit]').catch(() => {});
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  const at = page.url();
  await context.close();
  assert.ok(code, `no authorisation code for ${login} (at ${at})`);
  const res = await fetch(`${issuer}/token`, {
    method: 'POST',
    headers: {
      'content-type': 'application/x-www-form-urlencoded',
      authorization: `Basic ${Buffer.from(`${CLIENT_ID}:${CLIENT_SECRET}`).toString('base64')}`,
    },
    body: new URLSearchParams({ grant_type: 'authorization_code', code, redirect_uri: redirect, code_verifier: verifier }),
  });
  const body = await res.json();
  assert.ok(body.id_token, JSON.stringify(body));
  return body.id_token;
}

// Protocol Buffers, as far as two requests need: strings, a uint32 and a nested message.
const varint = (n) => {
  const out = [];
  while (n > 127) { out.push((n & 127) | 128); n >>>= 7; }
  out.push(n);
  return Buffer.from(out);
};
const pbBytes = (field, bytes) => Buffer.concat([varint((field << 3) | 2), varint(bytes.length), bytes]);
const pbString = (field, s) => pbBytes(field, Buffer.from(s, 'utf8'));
const pbUint = (field, n) => Buffer.concat([varint(field << 3), varint(n)]);

/** One unary gRPC call over HTTP/2 with the bearer `token`; rejects unless grpc-status is 0. */
function grpc(method, message, token) {
  return new Promise((resolve, reject) => {
    const client = http2.connect(grpcBase);
    client.on('error', reject);
    const frame = Buffer.alloc(5 + message.length);
    frame.writeUInt32BE(message.length, 1);
    message.copy(frame, 5);
    const req = client.request({
      ':method': 'POST', ':path': method, 'content-type': 'application/grpc', te: 'trailers',
      authorization: `Bearer ${token}`,
    });
    let status;
    let why = '';
    const read = (h) => {
      if (h['grpc-status'] !== undefined) { status = h['grpc-status']; why = decodeURIComponent(h['grpc-message'] || ''); }
    };
    req.on('response', read);
    req.on('trailers', read);
    req.on('data', () => {});
    req.on('end', () => {
      client.close();
      if (status === '0') resolve(); else reject(new Error(`${method}: grpc-status ${status} ${why}`));
    });
    req.on('error', reject);
    req.end(frame);
  });
}

/** A consented request for support from postcode district DM1, which the team covers. */
function covered(reference, child, parent) {
  return {
    ...referral(reference, child),
    family_members: [{ given_name: parent, family_name: child.family_name, relationship: 'mother', parental_responsibility: true, safe_to_contact: true }],
    address: { line1: '9 Orchard Row', town: 'Demoton', postcode: 'DM1 4AB' },
    needs: ['education', 'mental_health'],
    concerns: 'Attendance has fallen this term.',
    requested_support: 'early_help_team',
    consent: { obtained: true, given_by: `${parent} ${child.family_name}`, method: 'signed', date: '2026-11-20' },
  };
}

test('offers: a provider declines one with a reason and accepts another, by keyboard alone', async () => {
  // The council's team manager imports the directory and gives the team its terms.
  const manager = await idToken(worcsIssuer, 'tom.manager');
  const svc = '/earlyhelp.allocation.v1.AllocationService';
  await grpc(`${svc}/ImportDirectory`, pbString(1, 'worcs'), manager);
  const terms = Buffer.concat([
    pbString(1, 'early_help_team'), pbString(2, 'DM1'), pbUint(5, 10),
    pbString(8, 'offers@eht-north.example'), pbString(9, 'voluntary'),
  ]);
  await grpc(`${svc}/SetServiceTerms`, Buffer.concat([pbString(1, 'worcs'), pbString(2, 'eht-north'), pbBytes(3, terms)]), manager);
  // Two families' requests for support, each offered to the team. Their case ids, made within
  // the same minute, share the 8 characters a card shows: each offer is told by the child's age.
  const ageOn = (dob) => {
    const [y, m, d] = dob.split('-').map(Number);
    const now = new Date();
    return String(now.getUTCFullYear() - y - ((now.getUTCMonth() + 1 < m || (now.getUTCMonth() + 1 === m && now.getUTCDate() < d)) ? 1 : 0));
  };
  const families = [
    covered('BT-OFFER-1', { given_name: 'Zara', family_name: 'Quinn', date_of_birth: '2012-01-21' }, 'Nell'),
    covered('BT-OFFER-2', { given_name: 'Omar', family_name: 'Vale', date_of_birth: '2019-06-16' }, 'Ruth'),
  ];
  for (const doc of families) {
    const res = await fetch(`${base}/v1/referrals`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-api-key': API_KEY, 'idempotency-key': doc.source.reference },
      body: JSON.stringify(doc),
    });
    assert.equal(res.status, 201, await res.text());
  }
  const [declined, accepted] = families.map((f) => ageOn(f.children[0].date_of_birth));
  assert.notEqual(declined, accepted);

  const context = await browser.newContext();
  const page = await context.newPage();
  await signIn(page, 'Worcestershire Test Council', 'pat.provider');
  /** The children's ages of each offer listed. */
  const listed = () => page.evaluate(() => [...document.querySelectorAll('.govuk-summary-card')].map((c) => {
    const row = [...c.querySelectorAll('.govuk-summary-list__row')]
      .find((r) => r.querySelector('dt').textContent.trim() === "Children's ages");
    return row ? row.querySelector('dd').textContent.trim() : '';
  }));
  for (let i = 0; i < 150; i++) {
    await page.goto(`${base}/console/offers`);
    const ages = await listed();
    if (ages.includes(declined) && ages.includes(accepted)) break;
    await new Promise((r) => setTimeout(r, 200));
  }
  assert.ok((await listed()).includes(declined) && (await listed()).includes(accepted), `both offered: ${await listed()}`);
  await axe(page, 'offers to answer');
  await shot(page, 'offers-to-answer');
  /** The id of field `name` of the offer whose child is `age`, on the page as it is now. */
  const fieldOf = (age, name) => page.evaluate(([a, n]) => {
    const card = [...document.querySelectorAll('.govuk-summary-card')].find((c) => [...c.querySelectorAll('.govuk-summary-list__row')]
      .some((r) => r.querySelector('dt').textContent.trim() === "Children's ages" && r.querySelector('dd').textContent.trim() === a));
    return card.querySelector(`[name=${n}]`).id;
  }, [age, name]);

  // Declined without a reason first: the error summary, its link to the offer's reasons.
  await tabTo(page, 'the decision of the first offer', focusedId, await fieldOf(declined, 'decision'));
  await page.keyboard.press('ArrowDown');
  assert.equal(await page.evaluate(() => document.activeElement.value), 'decline');
  await tabTo(page, 'Send the answer', focusedButton, 'Send the answer');
  await Promise.all([page.waitForLoadState(), page.keyboard.press('Enter')]);
  const summary = page.locator('.govuk-error-summary');
  await summary.waitFor();
  assert.match(await page.title(), /^Error:/);
  assert.match(await summary.textContent(), /Select why you decline the offer/);
  assert.equal(await summary.locator('a').getAttribute('href'), '#reason');
  assert.equal(await fieldOf(declined, 'reason'), 'reason', "the link lands on this offer's reasons");
  assert.equal(await page.locator('#reason').getAttribute('type'), 'radio');
  assert.match(await page.locator('#reason-error').textContent(), /Select why you decline the offer/);
  assert.equal(await page.locator('#decision-1').isChecked(), true, 'the decision is kept');
  await axe(page, 'offers with an error');
  await shot(page, 'offer-decline-error');
  // From the summary's link to the reasons, by keyboard: the first reason, sent.
  await tabTo(page, 'the error summary link', focusedText, 'Select why you decline the offer');
  await page.keyboard.press('Enter');
  await page.waitForFunction(() => document.activeElement?.id === 'reason');
  await page.keyboard.press('Space');
  assert.equal(await page.locator('#reason').isChecked(), true);
  await tabTo(page, 'Send the answer', focusedButton, 'Send the answer');
  await Promise.all([page.waitForURL(/done=decline/), page.keyboard.press('Enter')]);
  assert.match(await page.textContent('main'), /You declined the offer: the council offers the case elsewhere\./);
  assert.ok(!(await listed()).includes(declined), `the declined offer is answered: ${await listed()}`);
  assert.ok((await listed()).includes(accepted));
  await axe(page, 'offers after a decline');

  // The other accepted.
  await tabTo(page, 'the decision of the other offer', focusedId, await fieldOf(accepted, 'decision'));
  await page.keyboard.press('Space');
  assert.equal(await page.evaluate(() => document.activeElement.value), 'accept');
  await tabTo(page, 'Send the answer', focusedButton, 'Send the answer');
  await Promise.all([page.waitForURL(/done=accept/), page.keyboard.press('Enter')]);
  assert.match(await page.textContent('main'), /You accepted the offer: the case is allocated to your service\./);
  const left = await listed();
  assert.ok(!left.includes(declined) && !left.includes(accepted), `both answered: ${left}`);
  await axe(page, 'offers after an accept');
  await shot(page, 'offers-answered');
  await context.close();
});
