/**
 * SLUICE_TEST_GRPC_TRANSPORT=lean|grpc-js runs every sluice of the suite, in a process of its own
 * or in the test's, on that transport (a test that sets GRPC_TRANSPORT itself still wins): the
 * whole suite can then be run against either transport, whichever is the default.
 */
export function transportUnderTest(): NodeJS.ProcessEnv {
  const transport = process.env['SLUICE_TEST_GRPC_TRANSPORT'];
  return transport === undefined || transport === '' ? {} : { GRPC_TRANSPORT: transport };
}
