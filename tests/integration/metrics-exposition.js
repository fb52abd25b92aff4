'use strict';
// A strict reader of the Prometheus text exposition format (version 0.0.4,
// https://prometheus.io/docs/instrumenting/exposition_formats/) with credbroker's naming
// conventions on top: every family has one HELP and one TYPE line before its samples, a family's
// samples are contiguous, no series twice, label values escaped as the format says, counters end
// in _total and never go below zero, every name starts with credbroker_. Throws on the first
// problem, naming the line; returns { families: Map(name -> { help, type, samples: [] }) } where a
// sample is { name, labels: {}, value }.

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const TYPES = new Set(['counter', 'gauge', 'histogram', 'summary', 'untyped']);
const VALUE = /^(?:[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?|[+-]?Inf|NaN)$/;

function fail(n, line, why) {
  throw new Error(`line ${n}: ${why}: ${JSON.stringify(line)}`);
}

// HELP text: only \\ and \n may follow a backslash.
function unescapeHelp(text, n, line) {
  return text.replace(/\\(.?)/g, (_, c) => {
    if (c === '\\') return '\\';
    if (c === 'n') return '\n';
    return fail(n, line, `bad escape \\${c} in HELP`);
  });
}

// name{a="x",b="y"} value [timestamp]
function parseSample(line, n) {
  const m = /^([^{\s]+)(\{(.*)\})?[ ]([^ ]+)(?:[ ](-?\d+))?$/.exec(line);
  if (!m) fail(n, line, 'not a sample line');
  const [, name, , body, value] = m;
  if (!METRIC_NAME.test(name)) fail(n, line, 'bad metric name');
  if (!VALUE.test(value)) fail(n, line, 'bad value');
  const labels = {};
  if (body !== undefined) {
    let i = 0;
    if (body.length === 0) fail(n, line, 'empty label set');
    while (i < body.length) {
      const eq = body.indexOf('=', i);
      if (eq < 0) fail(n, line, 'label without =');
      const label = body.slice(i, eq);
      if (!LABEL_NAME.test(label) || label.startsWith('__')) fail(n, line, `bad label name ${label}`);
      if (body[eq + 1] !== '"') fail(n, line, 'label value not quoted');
      let j = eq + 2;
      let v = '';
      for (;;) {
        if (j >= body.length) fail(n, line, 'unterminated label value');
        const c = body[j];
        if (c === '"') break;
        if (c === '\\') {
          const e = body[j + 1];
          if (e === '\\') v += '\\';
          else if (e === '"') v += '"';
          else if (e === 'n') v += '\n';
          else fail(n, line, `bad escape \\${e} in a label value`);
          j += 2;
          continue;
        }
        v += c;
        j++;
      }
      if (Object.prototype.hasOwnProperty.call(labels, label)) fail(n, line, `label ${label} twice`);
      labels[label] = v;
      j++;
      if (j === body.length) break;
      if (body[j] !== ',') fail(n, line, 'labels not separated by ","');
      j++;
      if (j === body.length) fail(n, line, 'trailing comma in the label set');
      i = j;
    }
  }
  return { name, labels, value: Number(value) };
}

function seriesKey(s) {
  return s.name + JSON.stringify(Object.keys(s.labels).sort().map((k) => [k, s.labels[k]]));
}

function checkNames(family, n, line) {
  if (!family.startsWith('credbroker_')) fail(n, line, 'name without the credbroker_ prefix');
}

// input: the bytes (checked to be UTF-8) or the text (a U+FFFD from decoding counts as not UTF-8).
function parse(input) {
  const text = Buffer.isBuffer(input) ? new TextDecoder('utf-8', { fatal: true }).decode(input) : input;
  if (typeof text !== 'string' || text.includes('\uFFFD')) throw new Error('not UTF-8 text');
  if (!text.endsWith('\n')) throw new Error('the text does not end with a line feed');
  const families = new Map();
  const series = new Set();
  const closed = new Set(); // families whose samples are over
  let current = null;
  const lines = text.slice(0, -1).split('\n');
  lines.forEach((line, i) => {
    const n = i + 1;
    if (line === '') fail(n, line, 'empty line');
    if (/[\r\t]/.test(line)) fail(n, line, 'carriage return or tab');
    if (line.startsWith('#')) {
      const m = /^# (HELP|TYPE) (\S+) ?(.*)$/.exec(line);
      if (!m) fail(n, line, 'a comment that is neither HELP nor TYPE');
      const [, kind, name, rest] = m;
      if (!METRIC_NAME.test(name)) fail(n, line, 'bad metric name');
      checkNames(name, n, line);
      let f = families.get(name);
      if (!f) {
        if (current) closed.add(current);
        f = { help: null, type: null, samples: [] };
        families.set(name, f);
        current = name;
      } else if (current !== name || f.samples.length > 0) {
        fail(n, line, `${kind} of ${name} after its samples or away from its family`);
      }
      if (kind === 'HELP') {
        if (f.help !== null) fail(n, line, 'second HELP');
        if (rest === '') fail(n, line, 'empty HELP');
        f.help = unescapeHelp(rest, n, line);
      } else {
        if (f.type !== null) fail(n, line, 'second TYPE');
        if (!TYPES.has(rest)) fail(n, line, 'unknown type');
        if (f.help === null) fail(n, line, 'TYPE before HELP (credbroker writes HELP first)');
        f.type = rest;
      }
      return;
    }
    const s = parseSample(line, n);
    const f = families.get(s.name);
    if (!f) fail(n, line, 'a sample of a family without HELP and TYPE');
    if (closed.has(s.name) || current !== s.name) fail(n, line, 'the family\'s samples are not contiguous');
    if (f.type === null) fail(n, line, 'a sample before its TYPE');
    const key = seriesKey(s);
    if (series.has(key)) fail(n, line, 'the same series twice');
    series.add(key);
    if (f.type === 'counter' && !(s.value >= 0)) fail(n, line, 'a counter below zero');
    f.samples.push(s);
  });
  for (const [name, f] of families) {
    if (f.help === null || f.type === null) throw new Error(`${name}: HELP or TYPE missing`);
    if (f.type === 'counter' && !name.endsWith('_total')) throw new Error(`${name}: a counter's name must end in _total`);
    if (f.type !== 'counter' && name.endsWith('_total')) throw new Error(`${name}: only counters end in _total`);
  }
  return { families };
}

// The value of the one series of family name with exactly these labels; undefined if absent.
function value(parsed, name, labels = {}) {
  const f = parsed.families.get(name);
  if (!f) return undefined;
  const want = seriesKey({ name, labels });
  const s = f.samples.find((x) => seriesKey(x) === want);
  return s ? s.value : undefined;
}

module.exports = { parse, value };
