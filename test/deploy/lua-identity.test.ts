import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { LUA_TYPE, loadEnvoyModel, obj, str } from './envoy-model';

/**
 * The token endpoint's Lua filter (envoy/envoy.yaml, `oauth2_client_identity`) run under LuaJIT,
 * the Lua Envoy embeds, with a stand-in for Envoy's request handle (headers, body, dynamic
 * metadata). Needs the `luajit` binary; without it the suite is skipped (and says so).
 */

const LUAJIT = process.env['LUAJIT_BIN'] ?? 'luajit';
const available = spawnSync(LUAJIT, ['-v']).status === 0;

/** Envoy's handle, as far as the script uses it; prints every metadata:set as ns|key=value. */
const DRIVER = `
local script, auth, ctype, body = arg[1], arg[2], arg[3], arg[4]
local function opt(v) if v == "<none>" then return nil end return v end
auth, ctype, body = opt(auth), opt(ctype), opt(body)
dofile(script)
local out = {}
local headers = { get = function(_, name)
  if name == "authorization" then return auth elseif name == "content-type" then return ctype end
end }
local buffer = nil
if body ~= nil then
  buffer = { length = function() return #body end, getBytes = function(_, i, n) return body:sub(i + 1, i + n) end }
end
local dynamic = { set = function(_, ns, k, v) out[#out + 1] = ns .. "|" .. k .. "=" .. v end }
envoy_on_request({
  headers = function() return headers end,
  body = function() return buffer end,
  streamInfo = function() return { dynamicMetadata = function() return dynamic end } end,
})
table.sort(out)
io.write(table.concat(out, "\\n"))
`;

let dir: string;
let script: string;

beforeAll(() => {
  const lua = loadEnvoyModel().filters.find((f) => f.type === LUA_TYPE)!;
  const sources = obj(lua.config['source_codes'], 'source_codes');
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sluice-lua-'));
  script = path.join(dir, 'identity.lua');
  fs.writeFileSync(script, str(obj(sources['oauth2_client_identity'], 'source')['inline_string'], 'inline_string'));
  fs.writeFileSync(path.join(dir, 'driver.lua'), DRIVER);
});

afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

const FORM = 'application/x-www-form-urlencoded';
const basic = (id: string, secret: string): string => `Basic ${Buffer.from(`${id}:${secret}`).toString('base64')}`;

function run(request: { authorization?: string; contentType?: string; body?: string }): string[] {
  const result = spawnSync(
    LUAJIT,
    [path.join(dir, 'driver.lua'), script, request.authorization ?? '<none>', request.contentType ?? '<none>', request.body ?? '<none>'],
    { encoding: 'utf8' },
  );
  if (result.status !== 0) throw new Error(`luajit failed: ${result.stderr}`);
  return result.stdout === '' ? [] : result.stdout.split('\n');
}

(available ? describe : describe.skip)('the token endpoint Lua filter (LuaJIT)', () => {
  it('takes the client from HTTP Basic (URL-decoded) over the form, and the username of a password grant, lower-cased', () => {
    expect(
      run({
        authorization: basic('web%20app', 'se:cret'),
        contentType: FORM,
        body: 'grant_type=password&username=Alice%40Example.COM&password=x&client_id=someone-else',
      }),
    ).toEqual(['sluice.oauth2|client_id=web app', 'sluice.oauth2|grant_type=password', 'sluice.oauth2|username=alice@example.com']);
  });

  it('takes a public client from the form (the first value), and no username outside the password grant', () => {
    expect(run({ contentType: `${FORM}; charset=UTF-8`, body: 'grant_type=authorization_code&client_id=mobile+app&client_id=other&username=bob&code=abc' })).toEqual([
      'sluice.oauth2|client_id=mobile app',
      'sluice.oauth2|grant_type=authorization_code',
    ]);
  });

  it('decodes every Basic padding length', () => {
    for (const id of ['a', 'ab', 'abc', 'abcd', 'abcde', 'client-é']) {
      expect(run({ authorization: basic(id, 'x') })).toEqual([`sluice.oauth2|client_id=${id}`]);
    }
  });

  it('sets nothing for a bearer token, a malformed Basic header, or a body that is not a form', () => {
    expect(run({ authorization: 'Bearer abc.def.ghi' })).toEqual([]);
    expect(run({ authorization: `Basic ${Buffer.from('no-colon').toString('base64')}` })).toEqual([]);
    expect(run({ contentType: 'application/json', body: '{"client_id":"web","grant_type":"password"}' })).toEqual([]);
    expect(run({ contentType: FORM, body: '' })).toEqual([]);
  });

  it('clips values to 128 bytes without cutting a UTF-8 character', () => {
    const long = 'u'.repeat(500);
    expect(run({ contentType: FORM, body: `grant_type=password&client_id=web&username=${long}` })).toContain(`sluice.oauth2|username=${'u'.repeat(128)}`);
    // 127 ASCII bytes, then a 2-byte character that would straddle the limit: it is left out whole.
    const straddling = `${'c'.repeat(127)}é${'c'.repeat(10)}`;
    expect(run({ contentType: FORM, body: `client_id=${encodeURIComponent(straddling)}` })).toEqual([`sluice.oauth2|client_id=${'c'.repeat(127)}`]);
  });
});

if (!available) {
  it('luajit is not installed: the Lua filter tests above were skipped', () => {
    process.stdout.write(`lua-identity: '${LUAJIT}' not found; skipped the Lua filter tests\n`);
  });
}
