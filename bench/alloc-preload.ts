import * as fs from 'node:fs';
import * as inspector from 'node:inspector';

/**
 * Preloaded (`node -r`) into the sluice that `npm run bench:alloc` measures: the first SIGUSR2
 * starts V8's sampling heap profiler, counting collected objects too (so it sees every allocation,
 * not what is still alive), and the second writes the profile to ALLOC_PROFILE.
 */
const session = new inspector.Session();
session.connect();
let sampling = false;
process.on('SIGUSR2', () => {
  if (!sampling) {
    sampling = true;
    session.post('HeapProfiler.startSampling', {
      samplingInterval: 4096,
      includeObjectsCollectedByMajorGC: true,
      includeObjectsCollectedByMinorGC: true,
    });
    return;
  }
  session.post('HeapProfiler.stopSampling', (err, result) => {
    if (err !== null) throw err;
    fs.writeFileSync(process.env.ALLOC_PROFILE!, JSON.stringify(result.profile));
    process.stderr.write('allocation profile written\n');
  });
});
