import * as path from 'node:path';
import { SettingsError, loadSettings } from '../../../src/settings/settings';

describe('where sluice looks for its config', () => {
  it('composes RUNTIME_ROOT/RUNTIME_SUBDIRECTORY/RUNTIME_APPDIRECTORY as the reference does', () => {
    expect(loadSettings({}, []).configDir).toBe('/srv/runtime_data/current/config');
    const env = { RUNTIME_ROOT: '/data', RUNTIME_SUBDIRECTORY: 'ratelimit', RUNTIME_APPDIRECTORY: 'config' };
    expect(loadSettings(env, []).configDir).toBe('/data/ratelimit/config');
  });

  it('lets --config override the RUNTIME_* composition, resolved against the working directory', () => {
    const env = { RUNTIME_ROOT: '/data', RUNTIME_SUBDIRECTORY: 'ratelimit' };
    expect(loadSettings(env, ['--config', 'examples/oauth2']).configDir).toBe(path.resolve('examples/oauth2'));
    expect(loadSettings(env, ['--config=/etc/sluice']).configDir).toBe('/etc/sluice');
  });
});

describe('settings from environment and flags', () => {
  it('uses the reference defaults for ports', () => {
    const settings = loadSettings({}, []);
    expect([settings.grpcPort, settings.port, settings.debugPort]).toEqual([8081, 8080, 6070]);
  });

  it('reads the environment and lets a flag win over it', () => {
    const settings = loadSettings({ GRPC_PORT: '9000', PORT: '9001', LOG_LEVEL: 'WARN' }, ['--grpc-port', '0']);
    expect([settings.grpcPort, settings.port, settings.logLevel]).toEqual([0, 9001, 'warn']);
  });

  it('takes a bare boolean flag as true', () => {
    expect(loadSettings({}, ['--shadow-mode']).shadowMode).toBe(true);
    expect(loadSettings({ SHADOW_MODE: 'true' }, ['--shadow-mode', 'false']).shadowMode).toBe(false);
  });

  it('reports every bad value and unknown flag at once, naming the variable or flag', () => {
    let error: unknown;
    try {
      loadSettings({ GRPC_PORT: '70000', MAX_HITS_ADDEND: '-1' }, ['--bogus', '--log-level', 'loud']);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(SettingsError);
    expect((error as SettingsError).problems).toEqual([
      "unknown argument '--bogus'",
      "GRPC_PORT: invalid value '70000' (a port from 0 to 65535)",
      "--log-level: invalid value 'loud' (trace, debug, info, warn, error, fatal, silent)",
      "MAX_HITS_ADDEND: invalid value '-1' (a positive integer)",
    ]);
  });
});
