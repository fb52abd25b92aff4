#!/usr/bin/env node
'use strict';
// A stand-in for credbroker-deliver (docs/mail-spool.md), selected with [mail] deliver_helper:
// the same contract (message on fd 3, one token JSON line on stdin, one result line on stdout)
// and a plan for fault injection. $FAKE_DELIVER_DIR holds:
//   plan.json      {"results":["temporary",...], "default":"sent", "retry_after":N,
//                   "sleep_ms":N, "reason":"..."}: the n-th attempt (counted over all
//                   messages) answers results[n], then default; "crash" exits without a line
//   attempts/      one empty file per attempt, named by its number n (taken with O_EXCL)
//   sent/          each delivered message, as the bytes read from fd 3 (named <n>.eml)
//   tokens.log     the token line of each attempt, minus the token itself
const fs = require('node:fs');
const path = require('node:path');

const dir = process.env.FAKE_DELIVER_DIR;
const plan = JSON.parse(fs.readFileSync(path.join(dir, 'plan.json'), 'utf8'));
const message = fs.readFileSync(3);
const stdin = fs.readFileSync(0, 'utf8');
const tokenLine = JSON.parse(stdin.split('\n')[0]);
// The attempt's number, taken with O_EXCL: helpers run side by side (four at once, and the
// orphans of a killed broker). Counting an attempts.log's lines after appending to it gave two
// of them one number, and then one's sent/ file replaced the other's: a message delivered but
// not found in sent/.
function takeNumber() {
  const numbers = path.join(dir, 'attempts');
  fs.mkdirSync(numbers, { recursive: true });
  for (let k = 0; ; k++) {
    try {
      fs.closeSync(fs.openSync(path.join(numbers, String(k)), 'wx'));
      return k;
    } catch (e) {
      if (e.code !== 'EEXIST') throw e;
    }
  }
}
const n = takeNumber();
const result = (plan.results || [])[n] || plan.default || 'sent';
const { access_token: token, ...rest } = tokenLine;
fs.appendFileSync(path.join(dir, 'tokens.log'), JSON.stringify({ n, has_token: !!token, token, ...rest }) + '\n');

function finish() {
  if (result === 'crash') process.exit(3);
  if (result === 'sent') {
    fs.mkdirSync(path.join(dir, 'sent'), { recursive: true });
    // Written aside, then renamed: a test that sees the file must see all of it.
    const tmp = path.join(dir, `sent-${n}.tmp`);
    fs.writeFileSync(tmp, message);
    fs.renameSync(tmp, path.join(dir, 'sent', `${n}.eml`));
  }
  const out = { result, reason: plan.reason || `fake ${result}` };
  if (plan.retry_after) out.retry_after = plan.retry_after;
  process.stdout.write(JSON.stringify(out) + '\n');
}
if (plan.sleep_ms) setTimeout(finish, plan.sleep_ms);
else finish();
