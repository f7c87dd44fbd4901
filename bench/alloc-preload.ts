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
    // Whole or not at all: the bench reads the file as soon as it appears.
    const file = process.env.ALLOC_PROFILE!;
    fs.writeFileSync(`${file}.part`, JSON.stringify(result.profile));
    fs.renameSync(`${file}.part`, file);
    process.stderr.write('allocation profile written\n');
  });
});
