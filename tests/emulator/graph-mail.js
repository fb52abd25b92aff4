'use strict';
// Microsoft Graph's mail endpoints as Exchange Online serves them: sendMail (JSON and MIME),
// drafts (JSON and MIME), attachment upload sessions with chunked PUTs to a pre-authenticated
// upload URL, sending a draft, Send As / Send on Behalf rights, the per app + mailbox throttles,
// and a store of delivered messages as their recipients see them (Bcc removed, bytes exact).
// Node standard library only; wired into emulator.js, which passes the helpers it shares.
//
// Facts reproduced (learn.microsoft.com: user-sendmail, user-post-messages,
// attachment-createuploadsession, outlook-large-attachments, throttling-limits):
//   * every Graph request is capped at 4 MB (413); MIME bodies are base64 (400
//     ErrorMimeContentInvalidBase64String "Invalid base64 string for MIME content.");
//   * createUploadSession (Mail.ReadWrite) answers 201 with uploadUrl, expirationDateTime and
//     nextExpectedRanges ["0-"]; each PUT carries Content-Range "bytes a-b/total", no
//     Authorization header (the URL is pre-authenticated), at most 4 MB, in order; 200 with
//     nextExpectedRanges ["{next}"], the last one 201 with a Location header;
//   * sending a draft needs Mail.Send and (for the draft) Mail.ReadWrite;
//   * a From that is not the mailbox needs Send As or Send on Behalf: 403 ErrorSendAsDenied;
//   * 429 ApplicationThrottled "Application is over its MailboxConcurrency limit." past 4
//     concurrent requests per app + mailbox; 10,000 requests / 10 min; 150 MB of uploads / 5 min;
//     Exchange's ~30 messages a minute per mailbox; all with Retry-After in seconds.

const crypto = require('crypto');
const fs = require('fs');
const path = require('path');

const MB4 = 4 * 1024 * 1024;
const CHUNK_UNIT = 320 * 1024;
const ATTACHMENT_MAX = 150 * 1024 * 1024;
const SESSION_LIFETIME_MS = 15 * 60 * 1000;
const DRAFTS_MAX = 1000;
const DRAFT_BYTES_MAX = 512 * 1024 * 1024;

const DEFAULT_LIMITS = {
  concurrency: 4, // concurrent requests per app + mailbox
  requests: 10000, // requests per app + mailbox ...
  request_window_s: 600, // ... in this window
  upload_bytes: 150 * 1024 * 1024, // upload bytes per app + mailbox ...
  upload_window_s: 300, // ... in this window
  messages_per_minute: 30, // messages submitted per mailbox and minute (Exchange)
  strict_chunks: true, // chunks a multiple of 320 KiB except the last
};

module.exports = function graphMail(kit) {
  const {
    GraphError, sendGraphError, authenticateGraph, validateSendMail, storeMail, applyFault, readBody,
    mediaType, sendJson, sendEmpty, lc, isPlainObject, AdminError, checkKeys, noteOn, safePath,
    writeFileAtomic, apps, UUID_RE, STD_BASE64_RE, GRAPH_RESOURCE, GRAPH_BODY_LIMIT,
  } = kit;

  const hasPermission = (at, name) => at.scopes.some((s) => lc(s) === lc(`${GRAPH_RESOURCE}/${name}`));

  function newState(mailDir) {
    const dir = path.join(mailDir, 'delivered');
    fs.mkdirSync(dir, { recursive: true, mode: 0o755 });
    const index = [];
    for (const n of fs.readdirSync(dir).filter((f) => /^\d{6,}-[0-9a-f]+\.json$/.test(f)).sort()) {
      try {
        index.push(JSON.parse(fs.readFileSync(path.join(dir, n), 'utf8')));
      } catch (_) { /* half-removed: skip */ }
    }
    return {
      dir, index, seq: index.length ? Math.max(...index.map((m) => m.seq)) + 1 : 1,
      grants: [], // { grantee, mailbox, right: "send_as" | "send_on_behalf" }
      drafts: new Map(), // id -> draft
      sessions: new Map(), // sha256(authtoken) -> upload session
      limits: { ...DEFAULT_LIMITS },
      throttle: new Map(), // app|mailbox -> { inflight, requests: [t], uploads: [[t, n]] }
      sends: new Map(), // mailbox -> [t]
      stats: { throttled: {}, drafts_created: 0, drafts_sent: 0, upload_sessions: 0, chunks: 0, chunk_errors: 0 },
    };
  }

  // ---------------------------------------------------------------------------
  // MIME: just enough parsing to route, check From and show the recipients' view
  // ---------------------------------------------------------------------------

  // Splits a message (Buffer) into unfolded headers [[name, value]] and the body.
  function splitMessage(buf) {
    let end = buf.indexOf('\r\n\r\n');
    let sep = 4;
    const lf = buf.indexOf('\n\n');
    if (end < 0 || (lf >= 0 && lf < end)) {
      end = lf;
      sep = 2;
    }
    const head = (end < 0 ? buf : buf.subarray(0, end)).toString('latin1');
    const body = end < 0 ? Buffer.alloc(0) : buf.subarray(end + sep);
    const headers = [];
    for (const line of head.split(/\r?\n/)) {
      if (/^[ \t]/.test(line) && headers.length) headers[headers.length - 1][1] += ` ${line.trim()}`;
      else {
        const i = line.indexOf(':');
        if (i > 0) headers.push([line.slice(0, i).trim(), line.slice(i + 1).trim()]);
      }
    }
    return { headers, head: end < 0 ? buf : buf.subarray(0, end), body, sep };
  }

  const header = (headers, name) => {
    const h = headers.find(([n]) => lc(n) === lc(name));
    return h ? h[1] : null;
  };

  // Addresses of an address-list header: <addr> forms, else bare addr-specs.
  function addresses(value) {
    if (!value) return [];
    const out = [];
    const text = value.replace(/"(?:[^"\\]|\\.)*"/g, '""').replace(/\([^()]*\)/g, '');
    for (const piece of text.split(',')) {
      const m = /<([^<>\s]+@[^<>\s]+)>/.exec(piece) || /([^\s<>:;"]+@[^\s<>:;"]+)/.exec(piece);
      if (m) out.push(lc(m[1]));
    }
    return out;
  }

  function param(value, name) {
    if (!value) return null;
    const star = new RegExp(`;\\s*${name}\\*=([^;]+)`, 'i').exec(value);
    if (star) {
      const m = /^([^']*)'[^']*'(.*)$/.exec(star[1].trim());
      if (m) {
        try {
          return decodeURIComponent(m[2]);
        } catch (_) { return m[2]; }
      }
    }
    const m = new RegExp(`;\\s*${name}=("(?:[^"\\\\]|\\\\.)*"|[^;\\s]+)`, 'i').exec(value);
    if (!m) return null;
    return m[1].startsWith('"') ? m[1].slice(1, -1).replace(/\\(.)/g, '$1') : m[1];
  }

  // RFC 2047 encoded words (B and Q) to text.
  function decodeWords(s) {
    if (!s) return s;
    return s.replace(/=\?([^?]+)\?([BbQq])\?([^?]*)\?=(?:\s+(?==\?))?/g, (_, cs, enc, text) => {
      const bytes = lc(enc) === 'b' ? Buffer.from(text, 'base64')
        : Buffer.from(text.replace(/_/g, ' ').replace(/=([0-9A-Fa-f]{2})/g, (m, h) => String.fromCharCode(parseInt(h, 16))), 'latin1');
      return /^utf-?8$/i.test(cs) ? bytes.toString('utf8') : bytes.toString('latin1');
    });
  }

  function decodeBody(body, encoding) {
    const e = lc(encoding || '7bit').trim();
    if (e === 'base64') return Buffer.from(body.toString('latin1').replace(/[^A-Za-z0-9+/=]/g, ''), 'base64');
    if (e === 'quoted-printable') {
      const t = body.toString('latin1').replace(/=\r?\n/g, '');
      return Buffer.from(t.replace(/=([0-9A-Fa-f]{2})/g, (m, h) => String.fromCharCode(parseInt(h, 16))), 'latin1');
    }
    return body;
  }

  // Leaf parts of a message, depth first: { path, content_type, filename, content_id,
  // disposition, data (decoded Buffer) }.
  function leafParts(buf, prefix = '', depth = 0, out = []) {
    const { headers, body } = splitMessage(buf);
    const ct = header(headers, 'Content-Type') || 'text/plain; charset=us-ascii';
    const type = lc(ct.split(';')[0].trim());
    const boundary = param(ct, 'boundary');
    if (type.startsWith('multipart/') && boundary && depth < 20) {
      const delim = Buffer.from(`--${boundary}`);
      let i = body.indexOf(delim);
      let n = 0;
      while (i >= 0) {
        let start = i + delim.length;
        if (body.subarray(start, start + 2).toString() === '--') break;
        start = body.indexOf('\n', start) + 1;
        if (start <= 0) break;
        let next = body.indexOf(Buffer.from(`\n--${boundary}`), start);
        if (next < 0) break;
        const end = next > 0 && body[next - 1] === 0x0d ? next - 1 : next;
        n += 1;
        leafParts(body.subarray(start, end), `${prefix}${n}.`, depth + 1, out);
        next += 1;
        i = next;
      }
      return out;
    }
    const disposition = header(headers, 'Content-Disposition');
    out.push({
      path: prefix.replace(/\.$/, '') || '1',
      content_type: type,
      filename: decodeWords(param(disposition, 'filename') || param(ct, 'name')),
      content_id: (header(headers, 'Content-ID') || '').replace(/^<|>$/g, '') || null,
      disposition: disposition ? lc(disposition.split(';')[0].trim()) : null,
      data: decodeBody(body, header(headers, 'Content-Transfer-Encoding')),
    });
    return out;
  }

  // ---------------------------------------------------------------------------
  // Building MIME for JSON messages and for drafts with uploaded attachments
  // ---------------------------------------------------------------------------

  const encodeWord = (s) => (/^[\x20-\x7e]*$/.test(s) ? s : `=?UTF-8?B?${Buffer.from(s, 'utf8').toString('base64')}?=`);
  const b64lines = (buf) => buf.toString('base64').replace(/.{1,76}/g, '$&\r\n');
  const recipientList = (list) => (list || []).map((r) => {
    const ea = r.emailAddress;
    return ea.name ? `${encodeWord(ea.name)} <${ea.address}>` : ea.address;
  }).join(', ');

  function attachmentPart(a, boundary) {
    const name = a.name.replace(/["\\\r\n]/g, '_');
    const lines = [`--${boundary}`, `Content-Type: ${a.contentType || 'application/octet-stream'}; name="${encodeWord(name)}"`,
      `Content-Disposition: ${a.isInline ? 'inline' : 'attachment'}; filename="${encodeWord(name)}"`];
    if (a.contentId) lines.push(`Content-ID: <${a.contentId}>`);
    lines.push('Content-Transfer-Encoding: base64', '', '');
    return Buffer.concat([Buffer.from(lines.join('\r\n'), 'latin1'), Buffer.from(b64lines(a.data))]);
  }

  // A JSON microsoft.graph.message as the MIME Exchange would deliver.
  function mimeFromJson(m, mailbox) {
    const hdr = [];
    const from = m.from ? recipientList([m.from]) : mailbox;
    hdr.push(`From: ${from}`);
    if (m.toRecipients && m.toRecipients.length) hdr.push(`To: ${recipientList(m.toRecipients)}`);
    if (m.ccRecipients && m.ccRecipients.length) hdr.push(`Cc: ${recipientList(m.ccRecipients)}`);
    if (m.bccRecipients && m.bccRecipients.length) hdr.push(`Bcc: ${recipientList(m.bccRecipients)}`);
    if (m.replyTo && m.replyTo.length) hdr.push(`Reply-To: ${recipientList(m.replyTo)}`);
    hdr.push(`Subject: ${encodeWord(m.subject || '')}`);
    for (const h of m.internetMessageHeaders || []) hdr.push(`${h.name}: ${h.value}`);
    hdr.push('MIME-Version: 1.0');
    const textType = lc((m.body && m.body.contentType) || 'text') === 'html' ? 'text/html' : 'text/plain';
    const bodyPart = [`Content-Type: ${textType}; charset=utf-8`, 'Content-Transfer-Encoding: base64', '',
      b64lines(Buffer.from((m.body && m.body.content) || '', 'utf8'))].join('\r\n');
    const atts = (m.attachments || []).map((a) => ({ ...a, data: Buffer.from(a.contentBytes, 'base64') }));
    if (!atts.length) return Buffer.from(`${hdr.join('\r\n')}\r\n${bodyPart}`, 'utf8');
    const boundary = `=_emulator_${crypto.randomBytes(8).toString('hex')}`;
    hdr.push(`Content-Type: multipart/mixed; boundary="${boundary}"`);
    const pieces = [Buffer.from(`${hdr.join('\r\n')}\r\n\r\n--${boundary}\r\n${bodyPart}`, 'utf8')];
    for (const a of atts) pieces.push(attachmentPart(a, boundary));
    pieces.push(Buffer.from(`--${boundary}--\r\n`));
    return Buffer.concat(pieces);
  }

  // The draft's MIME with the uploaded attachments added as parts of a multipart/mixed.
  function mimeWithAttachments(mime, attachments) {
    if (!attachments.length) return mime;
    const { headers, head, body } = splitMessage(mime);
    const ct = header(headers, 'Content-Type') || 'text/plain';
    const boundary = param(ct, 'boundary');
    if (lc(ct).startsWith('multipart/mixed') && boundary) {
      const close = body.lastIndexOf(Buffer.from(`--${boundary}--`));
      if (close >= 0) {
        const pieces = [head, Buffer.from('\r\n\r\n'), body.subarray(0, close)];
        for (const a of attachments) pieces.push(attachmentPart(a, boundary));
        pieces.push(body.subarray(close));
        return Buffer.concat(pieces);
      }
    }
    // Not multipart/mixed: the original body becomes the first part of one.
    const outer = `=_emulator_${crypto.randomBytes(8).toString('hex')}`;
    const lines = head.toString('latin1').split(/\r?\n/);
    const keep = [];
    const moved = [];
    let target = keep;
    for (const line of lines) {
      if (!/^[ \t]/.test(line)) target = /^content-/i.test(line) ? moved : keep;
      target.push(line);
    }
    if (!moved.length) moved.push('Content-Type: text/plain; charset=us-ascii');
    keep.push(`Content-Type: multipart/mixed; boundary="${outer}"`);
    const pieces = [Buffer.from(`${keep.join('\r\n')}\r\n\r\n--${outer}\r\n${moved.join('\r\n')}\r\n\r\n`, 'latin1'), body,
      Buffer.from('\r\n')];
    for (const a of attachments) pieces.push(attachmentPart(a, outer));
    pieces.push(Buffer.from(`--${outer}--\r\n`));
    return Buffer.concat(pieces);
  }

  // ---------------------------------------------------------------------------
  // Delivery: the message as its recipients see it
  // ---------------------------------------------------------------------------

  function recipientsOf(headers) {
    const all = [...addresses(header(headers, 'To')), ...addresses(header(headers, 'Cc')), ...addresses(header(headers, 'Bcc'))];
    return [...new Set(all)];
  }

  // Removes Bcc and adds Message-ID and Date when missing, as Exchange does on submission.
  function recipientView(mime) {
    const { headers, head, body, sep } = splitMessage(mime);
    const lines = head.toString('latin1').split(/\r?\n/);
    const out = [];
    let dropping = false;
    for (const line of lines) {
      if (/^[ \t]/.test(line)) {
        if (!dropping) out.push(line);
        continue;
      }
      dropping = /^bcc\s*:/i.test(line);
      if (!dropping) out.push(line);
    }
    if (!header(headers, 'Message-ID')) out.push(`Message-ID: <${crypto.randomUUID()}@emulator.invalid>`);
    if (!header(headers, 'Date')) out.push(`Date: ${new Date().toUTCString().replace('GMT', '+0000')}`);
    return Buffer.concat([Buffer.from(out.join('\r\n'), 'latin1'), Buffer.from(sep === 4 ? '\r\n\r\n' : '\n\n'), body]);
  }

  function deliver(app, mailbox, mime, via, saveToSentItems) {
    const st = app.mail;
    const { headers } = splitMessage(mime);
    const recipients = recipientsOf(headers);
    const view = recipientView(mime);
    const vh = splitMessage(view).headers;
    const seq = st.seq++;
    const id = `${String(seq).padStart(6, '0')}-${crypto.randomBytes(4).toString('hex')}`;
    const meta = {
      seq, id, mailbox: lc(mailbox), via, save_to_sent_items: saveToSentItems !== false,
      from: addresses(header(vh, 'From'))[0] || null, recipients,
      subject: decodeWords(header(vh, 'Subject')), message_id: header(vh, 'Message-ID'),
      size: view.length, sha256: crypto.createHash('sha256').update(view).digest('hex'),
      delivered_at: new Date().toISOString(),
    };
    writeFileAtomic(path.join(st.dir, `${id}.eml`), view, 0o644);
    writeFileAtomic(path.join(st.dir, `${id}.json`), `${JSON.stringify(meta)}\n`, 0o644);
    st.index.push(meta);
    const sends = st.sends.get(lc(mailbox)) || [];
    sends.push(Date.now());
    st.sends.set(lc(mailbox), sends);
    return meta;
  }

  // ---------------------------------------------------------------------------
  // Rights, permissions, throttling
  // ---------------------------------------------------------------------------

  const hasGrant = (grantee, mailbox) => (st) => st.grants.some((g) => g.grantee === lc(grantee) && g.mailbox === lc(mailbox));

  const denied = (perm) => new GraphError(403, 'ErrorAccessDenied',
    `Access is denied. Check credentials and try again. The token lacks the ${perm} permission.`);
  const sendAsDenied = (who, as) => new GraphError(403, 'ErrorSendAsDenied',
    `The user account which was used to submit this request does not have the right to send mail on behalf of the specified sending account. ${who} has no Send As or Send on Behalf right on ${as}., Cannot submit message.`);

  // Checks the token may act on mailbox for the given kind ("send" or "readwrite"): delegated
  // on its own mailbox needs Mail.Send / Mail.ReadWrite; on another one the .Shared permission
  // plus a Send As / Send on Behalf grant; app-only the application permission.
  function checkMailboxAccess(app, at, mailbox, kind) {
    const perm = kind === 'send' ? 'Mail.Send' : 'Mail.ReadWrite';
    if (at.app_only) {
      if (!hasPermission(at, perm)) throw denied(perm);
      if (!apps.mailboxAllowed(app.store.client(at.client_id), mailbox)) {
        throw new GraphError(403, 'ErrorAccessDenied', 'Access to OData is disabled: [RAOP] : Blocked by tenant configured AppOnly AccessPolicy settings.');
      }
      return;
    }
    if (lc(mailbox) === lc(at.user)) {
      if (!hasPermission(at, perm)) throw denied(perm);
      return;
    }
    if (!hasPermission(at, `${perm}.Shared`)) throw denied(`${perm}.Shared`);
    if (!hasGrant(at.user, mailbox)(app.mail)) throw sendAsDenied(at.user, mailbox);
  }

  // From must be the mailbox, or one the mailbox (or the signed-in user) may send as.
  function checkFrom(app, at, mailbox, from) {
    if (!from || lc(from) === lc(mailbox)) return;
    if (hasGrant(mailbox, from)(app.mail)) return;
    if (!at.app_only && at.user && hasGrant(at.user, from)(app.mail)) return;
    throw sendAsDenied(mailbox, from);
  }

  function throttled(app, what, retryAfter, message) {
    const s = app.mail.stats.throttled;
    s[what] = (s[what] || 0) + 1;
    return new GraphError(429, 'ApplicationThrottled', message, { 'Retry-After': String(Math.max(1, Math.ceil(retryAfter))) });
  }

  function pruneTimes(list, since) {
    let i = 0;
    while (i < list.length && (Array.isArray(list[i]) ? list[i][0] : list[i]) <= since) i++;
    if (i) list.splice(0, i);
  }

  function throttleEntry(app, key) {
    let e = app.mail.throttle.get(key);
    if (!e) {
      e = { inflight: 0, requests: [], uploads: [] };
      app.mail.throttle.set(key, e);
    }
    return e;
  }

  // Counts one request against app + mailbox; throws 429 past a limit. The in-flight count is
  // released when the response is done.
  function admit(app, key, res, uploadBytes) {
    const L = app.mail.limits;
    const e = throttleEntry(app, key);
    const now = Date.now();
    e.inflight += 1;
    res.on('close', () => { e.inflight -= 1; });
    if (e.inflight > L.concurrency) throw throttled(app, 'MailboxConcurrency', 1, 'Application is over its MailboxConcurrency limit.');
    pruneTimes(e.requests, now - L.request_window_s * 1000);
    if (e.requests.length >= L.requests) {
      throw throttled(app, 'Requests', (e.requests[0] + L.request_window_s * 1000 - now) / 1000,
        `Application is over its request limit for this mailbox (${L.requests} requests per ${L.request_window_s} seconds).`);
    }
    e.requests.push(now);
    if (uploadBytes) {
      pruneTimes(e.uploads, now - L.upload_window_s * 1000);
      const used = e.uploads.reduce((n, [, b]) => n + b, 0);
      if (used + uploadBytes > L.upload_bytes) {
        throw throttled(app, 'Uploads', e.uploads.length ? (e.uploads[0][0] + L.upload_window_s * 1000 - now) / 1000 : L.upload_window_s,
          `Application is over its upload limit for this mailbox (${L.upload_bytes} bytes per ${L.upload_window_s} seconds).`);
      }
      e.uploads.push([now, uploadBytes]);
    }
  }

  function checkSendRate(app, mailbox) {
    const L = app.mail.limits;
    const list = app.mail.sends.get(lc(mailbox)) || [];
    const now = Date.now();
    pruneTimes(list, now - 60000);
    if (list.length >= L.messages_per_minute) {
      throw throttled(app, 'MessageRate', (list[0] + 60000 - now) / 1000,
        `The mailbox is over its message submission limit (${L.messages_per_minute} messages per minute).`);
    }
  }

  // ---------------------------------------------------------------------------
  // Graph endpoints
  // ---------------------------------------------------------------------------

  // /v1.0/me/... or /v1.0/users/{id}/... : sendMail, messages, messages/{id}/send,
  // messages/{id}/attachments/createUploadSession.
  const ROUTE_RE = /^\/v1\.0\/(?:me|users\/([^/]+))\/(sendmail|messages)(?:\/([^/]+)(?:\/(send|attachments\/createuploadsession))?)?$/i;

  function decodeSegment(s, what) {
    try {
      return decodeURIComponent(s);
    } catch (_) {
      throw new GraphError(400, 'BadRequest', `Invalid ${what} in the request URL.`);
    }
  }

  function resolveMailbox(at, userSegment) {
    if (userSegment === undefined) {
      if (at.app_only) throw new GraphError(400, 'BadRequest', '/me request is only valid with delegated authentication flow.');
      return at.user;
    }
    return decodeSegment(userSegment, 'user id');
  }

  // The base64 MIME body of a text/plain request: the decoded message, or 400.
  function mimeBody(got) {
    const text = got.body.toString('latin1').replace(/\r?\n/g, '');
    if (!text || !STD_BASE64_RE.test(text)) {
      throw new GraphError(400, 'ErrorMimeContentInvalidBase64String', 'Invalid base64 string for MIME content.');
    }
    return { text, mime: Buffer.from(text, 'base64') };
  }

  function parseJsonBody(got) {
    try {
      return JSON.parse(got.body.toString('utf8'));
    } catch (_) {
      throw new GraphError(400, 'RequestBodyRead', got.body.length ? 'Invalid JSON in the request body.' : 'Empty Payload. JSON content expected.');
    }
  }

  function handleSendMail(app, ctx, got, req, res) {
    const { at, mailbox } = ctx;
    checkMailboxAccess(app, at, mailbox, 'send');
    let mime;
    let record;
    let save = true;
    const mt = mediaType(req);
    if (mt === 'application/json') {
      const doc = parseJsonBody(got);
      validateSendMail(doc);
      save = doc.saveToSentItems !== false;
      checkFrom(app, at, mailbox, doc.message.from ? doc.message.from.emailAddress.address : null);
      mime = mimeFromJson(doc.message, mailbox);
      record = { mailbox, received_at: new Date().toISOString(), request: doc };
    } else if (mt === 'text/plain') {
      const b = mimeBody(got);
      mime = b.mime;
      const { headers } = splitMessage(mime);
      if (!recipientsOf(headers).length) {
        throw new GraphError(400, 'ErrorInvalidRecipients', 'At least one recipient is not valid., A message must have at least one recipient.');
      }
      checkFrom(app, at, mailbox, addresses(header(headers, 'From'))[0]);
      record = { mailbox, received_at: new Date().toISOString(), request: b.text, mime: mime.toString('utf8') };
    } else {
      throw new GraphError(415, 'UnsupportedMediaType', "Content-Type must be 'application/json' or 'text/plain' (MIME).");
    }
    checkSendRate(app, mailbox);
    try {
      storeMail(app, record);
      deliver(app, mailbox, mime, mt === 'text/plain' ? 'sendMail-mime' : 'sendMail-json', save);
    } catch (err) {
      process.stderr.write(`emulator: cannot store mail: ${err.message}\n`);
      throw new GraphError(500, 'InternalServerError', 'The emulator could not store the message.');
    }
    app.counters.send_mail_accepted += 1;
    app.counters.send_mail_by_mailbox[lc(mailbox)] = (app.counters.send_mail_by_mailbox[lc(mailbox)] || 0) + 1;
    sendEmpty(res, 202, { 'request-id': ctx.requestId, 'client-request-id': ctx.clientRequestId });
  }

  function draftView(d) {
    return {
      '@odata.context': `${GRAPH_RESOURCE}/v1.0/$metadata#users('${encodeURIComponent(d.mailbox)}')/messages/$entity`,
      id: d.id, createdDateTime: d.created, lastModifiedDateTime: d.created, isDraft: true,
      subject: d.subject, internetMessageId: d.messageId, hasAttachments: d.attachments.length > 0,
    };
  }

  function handleCreateDraft(app, ctx, got, req, res) {
    const { at, mailbox } = ctx;
    checkMailboxAccess(app, at, mailbox, 'readwrite');
    const st = app.mail;
    if (st.drafts.size >= DRAFTS_MAX) throw new GraphError(507, 'ErrorQuotaExceeded', 'The mailbox quota of the emulator is exceeded.');
    const mt = mediaType(req);
    let mime;
    let save = true;
    if (mt === 'application/json') {
      const m = parseJsonBody(got);
      if (!isPlainObject(m)) throw new GraphError(400, 'RequestBodyRead', 'Invalid request body: expected a microsoft.graph.message object.');
      // A draft may lack recipients; the rest is checked as for sendMail.
      validateSendMail({ message: { toRecipients: [{ emailAddress: { address: 'draft@emulator.invalid' } }], ...m } });
      mime = mimeFromJson(m, mailbox);
    } else if (mt === 'text/plain') {
      mime = mimeBody(got).mime;
    } else {
      throw new GraphError(415, 'UnsupportedMediaType', "Content-Type must be 'application/json' or 'text/plain' (MIME).");
    }
    const { headers } = splitMessage(mime);
    const id = `AAMkAD${crypto.randomBytes(30).toString('base64url')}=`;
    const d = {
      id, mailbox: lc(mailbox), owner: lc(at.client_id), mime, attachments: [], save,
      created: new Date().toISOString(), subject: decodeWords(header(headers, 'Subject')) || '',
      messageId: header(headers, 'Message-ID'),
    };
    st.drafts.set(id, d);
    st.stats.drafts_created += 1;
    sendJson(res, 201, draftView(d), { Location: `${GRAPH_RESOURCE}/v1.0/users/${encodeURIComponent(d.mailbox)}/messages/${encodeURIComponent(id)}` });
  }

  function findDraft(app, ctx, messageSegment) {
    const id = decodeSegment(messageSegment, 'message id');
    const d = app.mail.drafts.get(id);
    if (!d || d.mailbox !== lc(ctx.mailbox)) {
      throw new GraphError(404, 'ErrorItemNotFound', 'The specified object was not found in the store.');
    }
    return d;
  }

  function parseAttachmentItem(doc) {
    if (!isPlainObject(doc)) throw new GraphError(400, 'RequestBodyRead', 'Invalid request body: expected a JSON object.');
    const item = doc.AttachmentItem || doc.attachmentItem;
    if (!isPlainObject(item)) throw new GraphError(400, 'BadRequest', "The 'AttachmentItem' parameter is required.");
    if (item.attachmentType !== undefined && lc(item.attachmentType) !== 'file') {
      throw new GraphError(400, 'BadRequest', "attachmentType must be 'file' for a message attachment.");
    }
    if (typeof item.name !== 'string' || !item.name || item.name.length > 255) throw new GraphError(400, 'BadRequest', 'AttachmentItem.name is required.');
    if (!Number.isInteger(item.size) || item.size < 1) throw new GraphError(400, 'BadRequest', 'AttachmentItem.size must be a positive integer.');
    if (item.size > ATTACHMENT_MAX) {
      throw new GraphError(413, 'ErrorAttachmentSizeLimitExceeded', `The attachment size ${item.size} exceeds the maximum of ${ATTACHMENT_MAX} bytes.`);
    }
    for (const k of ['contentType', 'contentId']) {
      if (item[k] !== undefined && item[k] !== null && (typeof item[k] !== 'string' || item[k].length > 255 || /[\r\n]/.test(item[k]))) {
        throw new GraphError(400, 'BadRequest', `AttachmentItem.${k} must be a string.`);
      }
    }
    if (item.isInline !== undefined && typeof item.isInline !== 'boolean') throw new GraphError(400, 'BadRequest', 'AttachmentItem.isInline must be a boolean.');
    return item;
  }

  function handleCreateUploadSession(app, ctx, got, req, res, messageSegment) {
    const { at, mailbox } = ctx;
    checkMailboxAccess(app, at, mailbox, 'readwrite');
    const d = findDraft(app, ctx, messageSegment);
    if (mediaType(req) !== 'application/json') throw new GraphError(415, 'UnsupportedMediaType', "Content-Type must be 'application/json'.");
    const item = parseAttachmentItem(parseJsonBody(got));
    const pending = d.attachments.reduce((n, a) => n + a.size, 0) + d.mime.length;
    if (pending + item.size > DRAFT_BYTES_MAX) throw new GraphError(413, 'ErrorMessageSizeExceeded', 'The message exceeds the maximum supported size.');
    const authtoken = crypto.randomBytes(32).toString('base64url');
    const sid = `AAMkAD${crypto.randomBytes(18).toString('base64url')}`;
    const s = {
      sid, draft: d.id, mailbox: d.mailbox, key: ctx.key, name: item.name, size: item.size,
      contentType: item.contentType || 'application/octet-stream', isInline: !!item.isInline,
      contentId: item.contentId || null, chunks: [], next: 0, expires: Date.now() + SESSION_LIFETIME_MS,
    };
    app.mail.sessions.set(crypto.createHash('sha256').update(authtoken).digest('hex'), s);
    app.mail.stats.upload_sessions += 1;
    const host = typeof req.headers.host === 'string' && /^[A-Za-z0-9.:[\]-]+$/.test(req.headers.host) ? req.headers.host : '127.0.0.1';
    sendJson(res, 201, {
      '@odata.context': `${GRAPH_RESOURCE}/v1.0/$metadata#microsoft.graph.uploadSession`,
      uploadUrl: `https://${host}/api/v2.0/Users('${encodeURIComponent(d.mailbox)}')/Messages('${encodeURIComponent(d.id)}')/AttachmentSessions('${sid}')?authtoken=${authtoken}`,
      expirationDateTime: new Date(s.expires).toISOString(),
      nextExpectedRanges: ['0-'],
    });
  }

  function handleSendDraft(app, ctx, got, req, res, messageSegment) {
    const { at, mailbox } = ctx;
    checkMailboxAccess(app, at, mailbox, 'send');
    // The draft is an item of the mailbox: sending it reads and deletes it.
    if (at.app_only || lc(mailbox) === lc(at.user)) {
      if (!hasPermission(at, 'Mail.ReadWrite')) throw denied('Mail.ReadWrite');
    } else if (!hasPermission(at, 'Mail.ReadWrite.Shared')) {
      throw denied('Mail.ReadWrite.Shared');
    }
    const d = findDraft(app, ctx, messageSegment);
    const mime = mimeWithAttachments(d.mime, d.attachments);
    const { headers } = splitMessage(mime);
    if (!recipientsOf(headers).length) {
      throw new GraphError(400, 'ErrorInvalidRecipients', 'At least one recipient is not valid., A message must have at least one recipient.');
    }
    checkFrom(app, at, mailbox, addresses(header(headers, 'From'))[0]);
    checkSendRate(app, mailbox);
    try {
      deliver(app, mailbox, mime, 'draft', d.save);
    } catch (err) {
      process.stderr.write(`emulator: cannot store mail: ${err.message}\n`);
      throw new GraphError(500, 'InternalServerError', 'The emulator could not store the message.');
    }
    app.mail.drafts.delete(d.id);
    for (const [k, s] of app.mail.sessions) if (s.draft === d.id) app.mail.sessions.delete(k);
    app.mail.stats.drafts_sent += 1;
    app.counters.send_mail_by_mailbox[lc(mailbox)] = (app.counters.send_mail_by_mailbox[lc(mailbox)] || 0) + 1;
    sendEmpty(res, 202, { 'request-id': ctx.requestId, 'client-request-id': ctx.clientRequestId });
  }

  // PATCH of a draft: this emulator updates singleValueExtendedProperties only, and of them
  // models PidTagDeleteAfterSubmit ("Boolean 0x0E01"): Exchange removes the message from Sent
  // Items once it is submitted, so the delivered message is recorded with save_to_sent_items
  // false. Graph answers 200 with the updated message.
  function handleUpdateDraft(app, ctx, got, res, messageSegment) {
    checkMailboxAccess(app, ctx.at, ctx.mailbox, 'readwrite');
    const d = findDraft(app, ctx, messageSegment);
    const doc = parseJsonBody(got);
    if (!isPlainObject(doc)) throw new GraphError(400, 'RequestBodyRead', 'Invalid request body: expected a microsoft.graph.message object.');
    for (const k of Object.keys(doc)) {
      if (k !== 'singleValueExtendedProperties') {
        throw new GraphError(400, 'BadRequest', `The emulator updates only singleValueExtendedProperties of a draft, not '${k.slice(0, 60)}'.`);
      }
    }
    const props = doc.singleValueExtendedProperties;
    if (!Array.isArray(props) || props.length > 32) throw new GraphError(400, 'RequestBodyRead', 'singleValueExtendedProperties must be a collection.');
    for (const p of props) {
      if (!isPlainObject(p) || typeof p.id !== 'string' || typeof p.value !== 'string') {
        throw new GraphError(400, 'RequestBodyRead', 'Each singleValueLegacyExtendedProperty needs a string id and value.');
      }
      if (!/^(Boolean|String|Integer|Long|SystemTime|Binary) 0x[0-9A-Fa-f]{4}$/.test(p.id)) {
        throw new GraphError(400, 'ErrorInvalidExtendedPropertyValue', `The extended property id '${p.id.slice(0, 60)}' is not valid.`);
      }
      if (lc(p.id) === 'boolean 0x0e01') {
        if (p.value !== 'true' && p.value !== 'false') throw new GraphError(400, 'ErrorInvalidExtendedPropertyValue', 'A Boolean property takes true or false.');
        d.save = p.value !== 'true';
      }
    }
    sendJson(res, 200, draftView(d));
  }

  function handleDeleteDraft(app, ctx, res, messageSegment) {
    checkMailboxAccess(app, ctx.at, ctx.mailbox, 'readwrite');
    const d = findDraft(app, ctx, messageSegment);
    app.mail.drafts.delete(d.id);
    for (const [k, s] of app.mail.sessions) if (s.draft === d.id) app.mail.sessions.delete(k);
    app.mail.stats.drafts_deleted = (app.mail.stats.drafts_deleted || 0) + 1;
    sendEmpty(res, 204, { 'request-id': ctx.requestId, 'client-request-id': ctx.clientRequestId });
  }

  // Token and mailbox of a Graph request, for throttling and the handlers; null when the
  // Authorization header names no valid token (the handler then answers 401).
  function peekIdentity(app, req, userSegment) {
    try {
      const at = authenticateGraph(req, app.store);
      const mailbox = resolveMailbox(at, userSegment);
      return { at, mailbox, key: `${lc(at.client_id)}|${lc(mailbox)}` };
    } catch (_) {
      return null;
    }
  }

  async function handleGraph(app, req, res, pathname) {
    const { counters, store, faults } = app;
    const clientRequestId = typeof req.headers['client-request-id'] === 'string' && UUID_RE.test(req.headers['client-request-id'])
      ? req.headers['client-request-id'] : crypto.randomUUID();
    const ctx = { requestId: crypto.randomUUID(), clientRequestId };
    const m = ROUTE_RE.exec(pathname);
    let op = m ? (m[4] ? lc(m[4]) : lc(m[2])) : null;
    if (op === 'messages' && m[3] !== undefined) op = 'message';
    if (!m || (op === 'sendmail' && m[3] !== undefined)) {
      counters.not_found += 1;
      req.resume();
      return sendGraphError(res, new GraphError(404, 'ResourceNotFound', `Resource not found for the segment in '${safePath(pathname).slice(0, 100)}'.`), ctx);
    }
    const counter = {
      sendmail: 'send_mail', messages: 'mail_drafts', message: 'mail_draft_deletes', send: 'mail_draft_sends', 'attachments/createuploadsession': 'mail_upload_sessions',
    }[op];
    counters[counter] = (counters[counter] || 0) + 1;
    const errorCounter = op === 'sendmail' ? 'send_mail_errors' : 'mail_errors';
    res.on('finish', () => {
      if (!res.locals.transportFault && res.statusCode >= 400) counters[errorCounter] = (counters[errorCounter] || 0) + 1;
    });

    // Throttling counts a request from its arrival, as Graph's does.
    const who = peekIdentity(app, req, m[1]);
    let throttle = null;
    if (who) {
      try {
        admit(app, who.key, res, 0);
      } catch (err) {
        throttle = err;
      }
    }
    const got = await readBody(req, GRAPH_BODY_LIMIT);
    if (got.aborted) return undefined;

    const fault = faults.take('graph');
    if (fault && fault.mode === 'lost_reply') {
      // Carried out, but the answer never arrives: the client cannot know it worked.
      counters.faults_injected.graph += 1;
      noteOn(res, 'fault=lost_reply');
      res.locals.transportFault = true;
      res.writeHead = () => {
        kit.killSocket(req.socket, true);
        return res;
      };
      res.end = () => res;
    } else if (fault) {
      counters.faults_injected.graph += 1;
      return applyFault(app, 'graph', fault, req, res, ctx);
    }
    try {
      if (got.tooLarge) {
        throw new GraphError(413, 'RequestEntityTooLarge', 'The maximum request length supported is 4MB.', got.drop ? { Connection: 'close' } : {});
      }
      const allow = op === 'message' ? ['GET', 'PATCH', 'DELETE'] : ['POST'];
      if (!allow.includes(req.method)) {
        throw new GraphError(405, 'MethodNotAllowed', `The HTTP method '${req.method}' is not allowed for this resource.`, { Allow: allow.join(', ') });
      }
      const at = authenticateGraph(req, store);
      if (throttle) throw throttle;
      Object.assign(ctx, { at, mailbox: resolveMailbox(at, m[1]), key: who.key });
      if (op === 'message' && req.method === 'GET') {
        checkMailboxAccess(app, at, ctx.mailbox, 'readwrite');
        return sendJson(res, 200, draftView(findDraft(app, ctx, m[3])));
      }
      if (op === 'message' && req.method === 'PATCH') return handleUpdateDraft(app, ctx, got, res, m[3]);
      if (op === 'message') return handleDeleteDraft(app, ctx, res, m[3]);
      if (op === 'sendmail') return handleSendMail(app, ctx, got, req, res);
      if (op === 'messages') return handleCreateDraft(app, ctx, got, req, res);
      if (op === 'send') return handleSendDraft(app, ctx, got, req, res, m[3]);
      return handleCreateUploadSession(app, ctx, got, req, res, m[3]);
    } catch (err) {
      if (!(err instanceof GraphError)) throw err;
      sendGraphError(res, err, ctx);
      if (got.drop) res.on('finish', () => kit.killSocket(req.socket, false));
    }
    return undefined;
  }

  // ---------------------------------------------------------------------------
  // The upload URL (Outlook's AttachmentSessions): PUT chunks, GET status
  // ---------------------------------------------------------------------------

  const UPLOAD_RE = /^\/api\/v2\.0\/Users\('[^']*'\)\/Messages\('[^']*'\)\/AttachmentSessions\('([A-Za-z0-9_-]+)'\)$/;

  function sessionStatus(s) {
    return {
      '@odata.context': 'https://outlook.office.com/api/v2.0/$metadata#Users/Messages/AttachmentSessions/$entity',
      expirationDateTime: new Date(s.expires).toISOString(),
      nextExpectedRanges: [String(s.next)],
    };
  }

  const uploadError = (status, code, message, headers) => new GraphError(status, code, message, headers);

  // Checks one chunk's headers against the session: returns { start, end }.
  function checkChunk(app, s, req, got) {
    const cr = req.headers['content-range'];
    const m = typeof cr === 'string' ? /^bytes (\d{1,12})-(\d{1,12})\/(\d{1,12})$/.exec(cr.trim()) : null;
    if (!m) throw uploadError(400, 'ErrorInvalidContentRange', "The Content-Range header is missing or malformed: expected 'bytes {start}-{end}/{total}'.");
    const [start, end, total] = [Number(m[1]), Number(m[2]), Number(m[3])];
    if (total !== s.size) throw uploadError(400, 'ErrorInvalidContentRange', `The total size ${total} in Content-Range differs from the session's ${s.size}.`);
    if (end < start || end >= total) throw uploadError(400, 'ErrorInvalidContentRange', 'The Content-Range is not within the file.');
    const n = end - start + 1;
    const cl = req.headers['content-length'];
    if (cl === undefined || Number(cl) !== n || got.body.length !== n) {
      throw uploadError(400, 'ErrorInvalidContentLength', `Content-Length must equal the Content-Range length (${n}).`);
    }
    if (n > MB4) throw uploadError(413, 'ErrorRequestEntityTooLarge', 'A chunk may hold at most 4 MB.');
    if (start !== s.next) {
      throw uploadError(416, 'ErrorInvalidRange', `Expected the range starting at ${s.next}; chunks must be uploaded in order.`);
    }
    if (app.mail.limits.strict_chunks && end + 1 < total && n % CHUNK_UNIT !== 0) {
      throw uploadError(400, 'ErrorInvalidContentRange', `A chunk other than the last must be a multiple of 320 KiB (${CHUNK_UNIT} bytes).`);
    }
    return { start, end };
  }

  function storeChunk(app, s, got) {
    s.chunks.push(got.body);
    s.next += got.body.length;
    s.expires = Date.now() + SESSION_LIFETIME_MS;
    app.mail.stats.chunks += 1;
    if (s.next < s.size) return false;
    const d = app.mail.drafts.get(s.draft);
    if (d) {
      d.attachments.push({
        name: s.name, contentType: s.contentType, isInline: s.isInline, contentId: s.contentId,
        size: s.size, data: Buffer.concat(s.chunks), id: `AAMkAD${crypto.randomBytes(24).toString('base64url')}`,
      });
    }
    s.chunks = [];
    return true;
  }

  async function handleUpload(app, req, res, pathname) {
    const ctx = { requestId: crypto.randomUUID(), clientRequestId: crypto.randomUUID() };
    const m = UPLOAD_RE.exec(pathname);
    const q = new URLSearchParams(req.url.split('?')[1] || '');
    const token = q.get('authtoken') || '';
    const s = m ? app.mail.sessions.get(crypto.createHash('sha256').update(token).digest('hex')) : null;
    app.counters.mail_upload_requests = (app.counters.mail_upload_requests || 0) + 1;
    const declared = Number(req.headers['content-length']) || 0;
    let throttle = null;
    if (s) {
      try {
        admit(app, s.key, res, req.method === 'PUT' ? declared : 0);
      } catch (err) {
        throttle = err;
      }
    }
    const got = await readBody(req, MB4 + 1024);
    if (got.aborted) return undefined;
    const fault = app.faults.take('upload');
    if (fault && fault.mode === 'lost_reply' && s && got.ok) {
      // The chunk is kept, the answer is lost: the client must ask where to resume.
      app.counters.faults_injected.upload += 1;
      try {
        checkChunk(app, s, req, got);
        storeChunk(app, s, got);
      } catch (_) { /* an invalid chunk is just dropped */ }
      noteOn(res, 'fault=lost_reply');
      res.locals.transportFault = true;
      return kit.killSocket(req.socket, true);
    }
    if (fault) {
      app.counters.faults_injected.upload += 1;
      return applyFault(app, 'graph', fault, req, res, ctx);
    }
    try {
      if (!s || s.sid !== m[1] || s.expires <= Date.now()) {
        throw uploadError(404, 'ErrorItemNotFound', 'The upload session does not exist or has expired.');
      }
      // The URL is pre-authenticated for outlook.office.com: a Graph bearer token is refused.
      if (req.headers.authorization !== undefined) {
        // Graph's answer (msgraph-sdk-java issue 409): the Graph token's audience is not Outlook's.
        throw uploadError(401, 'InvalidAudienceForResource',
          `The audience claim value is invalid for current resource. Audience claim is '${GRAPH_RESOURCE}/', request url is 'https://outlook.office.com/api/v2.0/Users...'.`);
      }
      if (throttle) throw throttle;
      if (got.tooLarge) throw uploadError(413, 'ErrorRequestEntityTooLarge', 'A chunk may hold at most 4 MB.');
      if (req.method === 'GET') return sendJson(res, 200, sessionStatus(s));
      if (req.method === 'DELETE') {
        app.mail.sessions.delete(crypto.createHash('sha256').update(token).digest('hex'));
        return sendEmpty(res, 204);
      }
      if (req.method !== 'PUT') throw uploadError(405, 'MethodNotAllowed', `The HTTP method '${req.method}' is not allowed for this resource.`, { Allow: 'PUT, GET, DELETE' });
      checkChunk(app, s, req, got);
      if (!storeChunk(app, s, got)) return sendJson(res, 200, sessionStatus(s));
      const d = app.mail.drafts.get(s.draft);
      const attId = d && d.attachments.length ? d.attachments[d.attachments.length - 1].id : 'gone';
      return sendEmpty(res, 201, {
        Location: `https://outlook.office.com/api/v2.0/Users('${encodeURIComponent(s.mailbox)}')/Messages('${encodeURIComponent(s.draft)}')/Attachments('${attId}')`,
      });
    } catch (err) {
      if (!(err instanceof GraphError)) throw err;
      app.mail.stats.chunk_errors += 1;
      sendGraphError(res, err, ctx);
      if (got.drop) res.on('finish', () => kit.killSocket(req.socket, false));
    }
    return undefined;
  }

  // ---------------------------------------------------------------------------
  // Admin API
  // ---------------------------------------------------------------------------

  function findDelivered(app, req) {
    const id = new URLSearchParams(req.url.split('?')[1] || '').get('id');
    const meta = app.mail.index.find((x) => x.id === id);
    if (!meta) throw new AdminError(404, 'no such delivered message');
    return { meta, raw: fs.readFileSync(path.join(app.mail.dir, `${meta.id}.eml`)) };
  }

  function adminDelivered(app, body, req) {
    const q = new URLSearchParams(req.url.split('?')[1] || '');
    const rcpt = q.get('mailbox');
    const list = rcpt ? app.mail.index.filter((x) => x.recipients.includes(lc(rcpt))) : app.mail.index;
    return [200, list];
  }

  function adminDeliveredMessage(app, body, req) {
    const { meta, raw } = findDelivered(app, req);
    const { headers } = splitMessage(raw);
    const parts = leafParts(raw).map((p) => ({
      path: p.path, content_type: p.content_type, filename: p.filename, content_id: p.content_id,
      disposition: p.disposition, size: p.data.length, sha256: crypto.createHash('sha256').update(p.data).digest('hex'),
      text: p.content_type.startsWith('text/') && p.data.length <= 65536 ? p.data.toString('utf8') : undefined,
    }));
    return [200, { ...meta, headers, parts }];
  }

  function adminDeliveredPart(app, body, req) {
    const { raw } = findDelivered(app, req);
    const want = new URLSearchParams(req.url.split('?')[1] || '').get('part');
    const p = leafParts(raw).find((x) => x.path === want);
    if (!p) throw new AdminError(404, 'no such part');
    return [200, p.data];
  }

  function adminDeliveries(app) {
    const byRecipient = {};
    const byMessageId = {};
    for (const m of app.mail.index) {
      for (const r of m.recipients) byRecipient[r] = (byRecipient[r] || 0) + 1;
      if (m.message_id) byMessageId[m.message_id] = (byMessageId[m.message_id] || 0) + 1;
    }
    return [200, { total: app.mail.index.length, by_recipient: byRecipient, by_message_id: byMessageId }];
  }

  function adminClearDelivered(app) {
    let n = 0;
    for (const m of app.mail.index) {
      for (const ext of ['eml', 'json']) {
        try {
          fs.unlinkSync(path.join(app.mail.dir, `${m.id}.${ext}`));
        } catch (_) { /* gone */ }
      }
      n += 1;
    }
    app.mail.index = [];
    app.mail.sends.clear();
    return [200, { deleted: n }];
  }

  const RIGHTS = ['send_as', 'send_on_behalf'];

  function adminAddGrant(app, b) {
    checkKeys(b, ['grantee', 'mailbox', 'right']);
    for (const k of ['grantee', 'mailbox']) {
      if (typeof b[k] !== 'string' || !/^[^\s@]+@[^\s@]+$/.test(b[k]) || b[k].length > 320) throw new AdminError(400, `"${k}" must be a mail address`);
    }
    const right = b.right === undefined ? 'send_as' : b.right;
    if (!RIGHTS.includes(right)) throw new AdminError(400, `"right" must be one of ${RIGHTS.join(', ')}`);
    const g = { grantee: lc(b.grantee), mailbox: lc(b.mailbox), right };
    app.mail.grants = app.mail.grants.filter((x) => !(x.grantee === g.grantee && x.mailbox === g.mailbox));
    app.mail.grants.push(g);
    return [201, app.mail.grants];
  }

  function adminSetLimits(app, b) {
    checkKeys(b, Object.keys(DEFAULT_LIMITS).concat(['reset']));
    for (const [k, v] of Object.entries(b)) {
      if (k === 'strict_chunks' || k === 'reset') {
        if (typeof v !== 'boolean') throw new AdminError(400, `"${k}" must be a boolean`);
      } else if (!Number.isInteger(v) || v < 1 || v > 1e12) {
        throw new AdminError(400, `"${k}" must be a positive integer`);
      }
    }
    if (b.reset) {
      app.mail.limits = { ...DEFAULT_LIMITS };
      app.mail.throttle.clear();
      app.mail.sends.clear();
    }
    for (const k of Object.keys(DEFAULT_LIMITS)) if (b[k] !== undefined) app.mail.limits[k] = b[k];
    return [200, app.mail.limits];
  }

  function adminState(app) {
    const st = app.mail;
    const throttle = {};
    for (const [k, e] of st.throttle) throttle[k] = { inflight: e.inflight, requests: e.requests.length, upload_bytes: e.uploads.reduce((n, [, b]) => n + b, 0) };
    return [200, {
      limits: st.limits, stats: st.stats, drafts: st.drafts.size, upload_sessions: st.sessions.size,
      grants: st.grants, throttle,
    }];
  }

  const adminRoutes = [
    ['GET', '/admin/mail/delivered', adminDelivered],
    ['DELETE', '/admin/mail/delivered', adminClearDelivered],
    ['GET', '/admin/mail/delivered/message', adminDeliveredMessage],
    ['GET', '/admin/mail/delivered/raw', (app, b, req) => [200, findDelivered(app, req).raw]],
    ['GET', '/admin/mail/delivered/part', adminDeliveredPart],
    ['GET', '/admin/mail/deliveries', adminDeliveries],
    ['GET', '/admin/mail/grants', (app) => [200, app.mail.grants]],
    ['POST', '/admin/mail/grants', adminAddGrant],
    ['DELETE', '/admin/mail/grants', (app) => {
      app.mail.grants = [];
      return [200, []];
    }],
    ['GET', '/admin/mail/limits', (app) => [200, app.mail.limits]],
    ['POST', '/admin/mail/limits', adminSetLimits],
    ['GET', '/admin/mail/state', adminState],
  ];

  return { newState, handleGraph, handleUpload, adminRoutes, UPLOAD_RE };
};
