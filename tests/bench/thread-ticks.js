'use strict';
// CPU time of a process's threads from /proc, for the benchmarks that report CPU per request
// (abuse --cpu, scale): less noisy on a shared machine than a rate, since what the load
// generator and other processes do is not in it.
const fs = require('node:fs');

// Clock ticks a second in /proc/PID/task/TID/stat (USER_HZ, 100 on Linux).
const TICKS_PER_SEC = 100;

// CPU ticks (user + system) of each of pid's threads, the event loop (the main thread) first.
function threadTicks(pid) {
  const dir = `/proc/${pid}/task`;
  const tids = fs.readdirSync(dir).map(Number).sort((a, b) => (a === pid ? -1 : b === pid ? 1 : a - b));
  return tids.map((tid) => {
    const stat = fs.readFileSync(`${dir}/${tid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return Number(f[11]) + Number(f[12]); // utime, stime
  });
}

module.exports = { threadTicks, TICKS_PER_SEC };
