#!/usr/bin/env bash
# selftest.sh — end-to-end check of the Microsoft emulator with curl.
#
# Generates a test PKI, starts emulator.js with a ready file, exercises the
# token endpoint, Graph sendMail, fault injection, counters, rotation modes,
# token expiry and restart persistence, then prints "N passed, 0 failed".
# Stops at the first failure with a message and the emulator log tail.
# Needs: node, curl, certtool. JSON is parsed with node (no jq needed).
# KEEP=1 keeps the work directory for inspection.
#
# "A && B || fail ..." is used deliberately: fail exits, so it runs exactly
# when A or B is false.
# shellcheck disable=SC2015
set -u

here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/emulator-selftest.XXXXXX")
log="$work/emulator.log"
emu_pid=""
port=0
admin_port=0
passed=0

TENANT="contoso.onmicrosoft.com"
CLIENT="3f1b2c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d"
USER="alerts@contoso.com"
GRAPH="https://graph.microsoft.com"
SCOPE="$GRAPH/Mail.Send offline_access"
UUID_RE='^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$'

# --- plumbing -----------------------------------------------------------------

stop_emulator() {
	local rc=0
	if [ -n "$emu_pid" ]; then
		if kill -0 "$emu_pid" 2>/dev/null; then
			kill -TERM "$emu_pid" 2>/dev/null
			wait "$emu_pid"
			rc=$?
		fi
		emu_pid=""
	fi
	return $rc
}

cleanup() {
	stop_emulator
	if [ "${KEEP:-0}" = 1 ]; then
		echo "work directory kept: $work"
	else
		rm -rf "$work"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

fail() {
	echo "FAIL: $*" >&2
	if [ -f "$log" ]; then
		echo "--- last lines of the emulator log:" >&2
		tail -n 15 "$log" >&2
	fi
	echo "$passed passed, 1 failed"
	exit 1
}

ok() {
	passed=$((passed + 1))
	echo "ok $passed - $*"
}

for tool in node curl certtool; do
	command -v "$tool" >/dev/null 2>&1 || fail "$tool not found"
done

# jget FILE EXPR — evaluate a JS expression over the JSON document d in FILE.
# Strings print raw, everything else as JSON; exit 1 if unparsable/undefined.
jget() {
	node -e '
const fs = require("fs");
let d;
try { d = JSON.parse(fs.readFileSync(process.argv[1], "utf8")); } catch (e) { process.exit(1); }
let v;
try { v = new Function("d", "return (" + process.argv[2] + ");")(d); } catch (e) { process.exit(1); }
if (v === undefined) process.exit(1);
process.stdout.write(typeof v === "string" ? v : JSON.stringify(v));
' "$1" "$2"
}

# jcheck FILE EXPR — true if the JS expression over d is truthy.
jcheck() {
	[ "$(jget "$1" "!!($2)" 2>/dev/null)" = "true" ]
}

# req NAME METHOD URL [curl args...] — HTTPS request; body in $work/NAME.body,
# headers in $work/NAME.hdr, HTTP status (or curl-N) in $status.
req() {
	local name=$1 method=$2 url=$3 rc
	shift 3
	status=$(curl -sS --cacert "$work/certs/ca.pem" --max-time 20 -X "$method" \
		-o "$work/$name.body" -D "$work/$name.hdr" -w '%{http_code}' "$@" "$url" 2>"$work/$name.err")
	rc=$?
	[ $rc -eq 0 ] || status="curl-$rc"
}

# admin METHOD PATH [JSON] — admin API call; body in $work/admin.body.
admin() {
	local args=()
	[ $# -ge 3 ] && args=(-H 'Content-Type: application/json' --data-binary "$3")
	status=$(curl -sS --max-time 10 -X "$1" -o "$work/admin.body" -w '%{http_code}' \
		"${args[@]}" "http://127.0.0.1:$admin_port$2" 2>"$work/admin.err") || status="curl-$?"
}

# token NAME REFRESH_TOKEN [SCOPE [TENANT [CLIENT]]] — refresh_token grant, sent the way
# MSAL sends it (client_info=1, x-client-* headers).
token() {
	req "$1" POST "https://127.0.0.1:$port/${4:-$TENANT}/oauth2/v2.0/token" \
		-H 'x-client-sku: MSAL.Python' -H 'x-client-ver: 1.31.0' -H 'x-ms-lib-capability: retry-after, h429' \
		--data-urlencode grant_type=refresh_token \
		--data-urlencode "client_id=${5:-$CLIENT}" \
		--data-urlencode "refresh_token=$2" \
		--data-urlencode "scope=${3:-$SCOPE}" \
		--data-urlencode client_info=1
}

# send NAME ACCESS_TOKEN [MAILBOX_PATH [BODY_FILE]] — Graph sendMail (JSON).
send() {
	req "$1" POST "https://localhost:$port/v1.0/${3:-me}/sendMail" \
		-H "Authorization: Bearer $2" -H 'Content-Type: application/json' \
		--data-binary "@${4:-$work/mail.json}"
}

expect_status() { # NAME WANT WHAT
	[ "$status" = "$2" ] || fail "$3: expected HTTP $2, got $status; body: $(head -c 600 "$work/$1.body" 2>/dev/null)"
}

expect_json() { # NAME EXPR WHAT
	jcheck "$work/$1.body" "$2" || fail "$3: expected ($2); body: $(head -c 600 "$work/$1.body")"
}

# AAD error shape: the exact fields and formats of the identity platform.
expect_aad_error() { # NAME STATUS ERROR CODE WHAT
	expect_status "$1" "$2" "$5"
	expect_json "$1" "d.error === '$3' && JSON.stringify(d.error_codes) === '[$4]'" "$5"
	expect_json "$1" "/^AADSTS$4: .+\\r\\nTrace ID: [0-9a-f-]{36}\\r\\nCorrelation ID: [0-9a-f-]{36}\\r\\nTimestamp: \\d{4}-\\d\\d-\\d\\d \\d\\d:\\d\\d:\\d\\dZ\$/.test(d.error_description)" "$5 (error_description)"
	expect_json "$1" "/^\\d{4}-\\d\\d-\\d\\d \\d\\d:\\d\\d:\\d\\dZ\$/.test(d.timestamp) && /$UUID_RE/.test(d.trace_id) && /$UUID_RE/.test(d.correlation_id)" "$5 (timestamp/ids)"
	expect_json "$1" "d.error_description.includes('Trace ID: ' + d.trace_id) && d.error_uri === 'https://login.microsoftonline.com/error?code=$4'" "$5 (trace id, error_uri)"
}

expect_graph_error() { # NAME STATUS CODE WHAT
	expect_status "$1" "$2" "$4"
	expect_json "$1" "d.error.code === '$3' && typeof d.error.message === 'string' && /$UUID_RE/.test(d.error.innerError['request-id']) && /$UUID_RE/.test(d.error.innerError['client-request-id']) && typeof d.error.innerError.date === 'string'" "$4 (Graph error shape)"
}

header() { # NAME HEADER — value of a response header (last one wins)
	tr -d '\r' <"$work/$1.hdr" | awk -v h="$(echo "$2" | tr '[:upper:]' '[:lower:]')" \
		'{ n = index($0, ":"); if (n && tolower(substr($0, 1, n - 1)) == h) { v = substr($0, n + 1); sub(/^[ \t]+/, "", v) } } END { print v }'
}

start_emulator() {
	rm -f "$work/ready.json"
	node "$here/emulator.js" --cert "$work/certs/server.pem" --key "$work/certs/server-key.pem" \
		--state-dir "$work/state" --ready-file "$work/ready.json" \
		--port "$port" --admin-port "$admin_port" >>"$log" 2>&1 &
	emu_pid=$!
	local i=0
	while [ ! -s "$work/ready.json" ]; do
		kill -0 "$emu_pid" 2>/dev/null || fail "emulator exited during start-up"
		i=$((i + 1))
		[ $i -le 100 ] || fail "emulator did not write its ready file within 10 s"
		sleep 0.1
	done
	port=$(jget "$work/ready.json" d.port) || fail "ready file: no port"
	admin_port=$(jget "$work/ready.json" d.admin_port) || fail "ready file: no admin_port"
	[ "$(jget "$work/ready.json" d.pid)" = "$emu_pid" ] || fail "ready file: pid is not the emulator's"
}

mail_count() {
	find "$work/state/mail" -maxdepth 1 -name '[0-9]*-*.json' | wc -l | tr -d ' '
}

# --- certificates and start-up --------------------------------------------------

"$here/gen-certs" "$work/certs" >"$work/gen-certs.out" 2>&1 || fail "gen-certs failed: $(cat "$work/gen-certs.out")"
[ -s "$work/gen-certs.out" ] && fail "gen-certs is not quiet: $(head -c 300 "$work/gen-certs.out")"
for f in ca.pem ca-key.pem server.pem server-key.pem; do
	[ -s "$work/certs/$f" ] || fail "gen-certs did not create $f"
done
ok "gen-certs created ca.pem, ca-key.pem, server.pem, server-key.pem quietly"

start_emulator
ok "emulator started (https $port, admin $admin_port)"

cat >"$work/mail.json" <<'EOF'
{"message":{"subject":"disk full on db1","body":{"contentType":"Text","content":"/var is at 97%"},
 "toRecipients":[{"emailAddress":{"address":"oncall@example.com","name":"On call"}}],
 "ccRecipients":[{"emailAddress":{"address":"ops@example.org"}}],
 "internetMessageHeaders":[{"name":"X-Credbroker-Id","value":"42"}]},
 "saveToSentItems":false}
EOF

# --- token endpoint: refresh_token grant ------------------------------------------

RT1="0.AXkA-selftest-$(node -e 'process.stdout.write(require("crypto").randomBytes(24).toString("base64url"))')"
admin POST /admin/refresh-tokens "{\"tenant\":\"$TENANT\",\"client_id\":\"$CLIENT\",\"refresh_token\":\"$RT1\",\"scopes\":[\"$GRAPH/Mail.Send\"],\"user\":\"$USER\",\"expires_in\":7776000}"
[ "$status" = 201 ] || fail "register refresh token: HTTP $status $(cat "$work/admin.body")"
ok "admin: refresh token registered"

token t1 "$RT1"
expect_status t1 200 "refresh grant"
expect_json t1 "Object.keys(d).sort().join() === 'access_token,expires_in,ext_expires_in,refresh_token,scope,token_type'" "refresh grant: exact fields"
expect_json t1 "d.token_type === 'Bearer' && d.expires_in === 3599 && d.ext_expires_in === 3599" "refresh grant: token_type/expires_in"
expect_json t1 "d.scope === 'Mail.Send'" "refresh grant: scope (Graph short name, no offline_access)"
expect_json t1 "/^[A-Za-z0-9_-]+\\.[A-Za-z0-9_-]+\\.[A-Za-z0-9_-]+\$/.test(d.access_token)" "refresh grant: JWT-shaped access token"
expect_json t1 "typeof d.refresh_token === 'string' && d.refresh_token.length > 20 && d.refresh_token !== '$RT1'" "refresh grant: new, different refresh token"
case "$(header t1 content-type)" in "application/json; charset=utf-8") ;; *) fail "refresh grant: Content-Type is '$(header t1 content-type)'" ;; esac
case "$(header t1 cache-control)" in *no-store*) ;; *) fail "refresh grant: no Cache-Control: no-store" ;; esac
AT1=$(jget "$work/t1.body" d.access_token)
RT2=$(jget "$work/t1.body" d.refresh_token)
ok "refresh grant: 200 with exact fields, JWT-shaped access token, new refresh token, no-store"

token t2 "$RT2"
expect_status t2 200 "the new refresh token"
RT3=$(jget "$work/t2.body" d.refresh_token)
AT2=$(jget "$work/t2.body" d.access_token)
[ "$RT3" != "$RT2" ] && [ "$AT2" != "$AT1" ] || fail "tokens are not fresh on each refresh"
ok "the new refresh token works and yields fresh tokens"

token t3 "$RT1"
expect_status t3 200 "lenient rotation: old refresh token"
ok "lenient rotation: the old refresh token stays valid (Microsoft behaviour)"

token t4 "$RT3" "Mail.Send"
expect_status t4 200 "bare scope without offline_access"
expect_json t4 "d.refresh_token === undefined && d.scope === 'Mail.Send'" "no offline_access: no refresh token, bare scope means Graph"
ok "bare Mail.Send means Graph; no refresh_token without offline_access"

token t5 "0.AXkA-never-issued-token"
expect_aad_error t5 400 invalid_grant 700082 "unknown refresh token"
expect_json t5 "d.suberror === 'bad_token'" "unknown refresh token: suberror"
ok "unknown refresh token: 400 invalid_grant 700082 bad_token, exact error shape"

token t6 "$RT3" "$SCOPE" "$TENANT" "99999999-0000-0000-0000-000000000000"
expect_aad_error t6 400 unauthorized_client 700016 "unknown client_id"
ok "unknown client_id: 400 unauthorized_client 700016"

token t7 "$RT3" "$GRAPH/Mail.Read offline_access"
expect_aad_error t7 400 invalid_scope 70011 "scope not granted"
ok "scope not granted: 400 invalid_scope 70011"

token t8 "$RT3" "$SCOPE" "nosuchtenant.onmicrosoft.com"
expect_aad_error t8 400 invalid_tenant 90002 "unknown tenant"
admin POST /admin/refresh-tokens "{\"tenant\":\"fabrikam.onmicrosoft.com\",\"client_id\":\"$CLIENT\",\"scopes\":[\"Mail.Send\"],\"user\":\"x@fabrikam.com\"}"
[ "$status" = 201 ] && jcheck "$work/admin.body" "typeof d.refresh_token === 'string'" || fail "register without refresh_token should generate one"
token t9 "$RT3" "$SCOPE" "fabrikam.onmicrosoft.com"
expect_aad_error t9 400 invalid_grant 70000 "refresh token used at another tenant"
ok "tenant checks: unknown tenant 90002, other tenant invalid_grant"

req t10 POST "https://127.0.0.1:$port/$TENANT/oauth2/v2.0/token" --data-urlencode grant_type=authorization_code \
	--data-urlencode "client_id=$CLIENT" --data-urlencode code=abc --data-urlencode "scope=$SCOPE"
expect_aad_error t10 400 unsupported_grant_type 70003 "authorization_code grant (not emulated)"
req t11 POST "https://127.0.0.1:$port/$TENANT/oauth2/v2.0/token" --data-urlencode grant_type=refresh_token \
	--data-urlencode "client_id=$CLIENT" --data-urlencode "scope=$SCOPE"
expect_aad_error t11 400 invalid_request 900144 "missing refresh_token"
req t12 POST "https://127.0.0.1:$port/$TENANT/oauth2/v2.0/token" -H 'Content-Type: application/json' --data-binary '{"grant_type":"refresh_token"}'
expect_aad_error t12 400 invalid_request 900144 "JSON instead of a form"
req t13 POST "https://127.0.0.1:$port/$TENANT/oauth2/v2.0/token" --data-binary 'grant_type=refresh_token&grant_type=password&%zz=%%'
expect_aad_error t13 400 invalid_request 90100 "repeated parameter"
ok "unsupported grant 70003, missing parameter 900144, non-form body, repeated parameter"

req t14 GET "https://127.0.0.1:$port/$TENANT/oauth2/v2.0/token"
expect_status t14 405 "GET on the token endpoint"
expect_json t14 "d.error === 'invalid_request'" "GET on the token endpoint: JSON error"
req t15 GET "https://127.0.0.1:$port/nothing/here"
expect_status t15 404 "unknown path"
expect_json t15 "typeof d.error === 'string'" "unknown path: JSON error"
head -c 1100000 /dev/zero | tr '\0' 'a' >"$work/big-form"
req t16 POST "https://127.0.0.1:$port/$TENANT/oauth2/v2.0/token" --data-binary "@$work/big-form"
expect_status t16 413 "1.1 MB token request"
ok "wrong method 405, unknown path 404, body over 1 MB 413 (all JSON)"

# --- Graph sendMail -----------------------------------------------------------------

send s1 "$AT1"
expect_status s1 202 "sendMail /me"
[ ! -s "$work/s1.body" ] || fail "sendMail: 202 body is not empty"
[ "$(mail_count)" = 1 ] || fail "sendMail: expected 1 file in the mail dir, found $(mail_count)"
mailfile=$(find "$work/state/mail" -maxdepth 1 -name '000001-*.json')
[ -n "$mailfile" ] || fail "sendMail: mail file is not named 000001-<random>.json"
jcheck "$mailfile" "d.mailbox === '$USER' && !isNaN(Date.parse(d.received_at)) && JSON.stringify(d.request) === JSON.stringify($(cat "$work/mail.json"))" \
	|| fail "sendMail: stored record is wrong: $(cat "$mailfile")"
ok "sendMail /me: 202, empty body, stored as 000001-*.json with mailbox resolved to the user"

send s2 "$AT2" "users/alerts%40contoso.com"
expect_status s2 202 "sendMail /users/{upn}"
send s3 "$AT2" "users/someone.else@contoso.com"
expect_graph_error s3 403 ErrorAccessDenied "delegated token for another mailbox"
admin GET /admin/mail
jcheck "$work/admin.body" "d.length === 2 && d[1].mailbox === 'alerts@contoso.com' && d[0].request.message.subject === 'disk full on db1'" \
	|| fail "GET /admin/mail: $(head -c 400 "$work/admin.body")"
ok "sendMail /users/{upn}: 202; other mailbox 403; GET /admin/mail lists mail oldest first"

send s4 "eyJ0eXAiOiJKV1QifQ.Ym9ndXM.c2ln"
expect_graph_error s4 401 InvalidAuthenticationToken "bogus token"
[ -n "$(header s4 www-authenticate)" ] || fail "401 without WWW-Authenticate"
req s5 POST "https://localhost:$port/v1.0/me/sendMail" -H 'Content-Type: application/json' --data-binary "@$work/mail.json"
expect_graph_error s5 401 InvalidAuthenticationToken "no Authorization header"
req s6 POST "https://localhost:$port/v1.0/me/sendMail" -H 'Authorization: Basic Zm9vOmJhcg==' -H 'Content-Type: application/json' --data-binary "@$work/mail.json"
expect_graph_error s6 401 InvalidAuthenticationToken "Basic instead of Bearer"
ok "sendMail with bogus/missing/non-Bearer token: 401 InvalidAuthenticationToken"

printf '%s' '{"message":{"subject":"s","body":{"contentType":"Text","content":"c"},"toRecipients":[]}}' >"$work/bad1.json"
send s7 "$AT1" me "$work/bad1.json"
expect_graph_error s7 400 ErrorInvalidRecipients "no recipients"
printf '%s' '{"message":{"subject":"s","body":{"contentType":"Text","content":"c"},"toRecipients":[{"emailAddress":{"address":"not-an-address"}}]}}' >"$work/bad2.json"
send s8 "$AT1" me "$work/bad2.json"
expect_graph_error s8 400 ErrorInvalidRecipients "implausible address"
printf '%s' '{"message":{"subject":"s",' >"$work/bad3.json"
send s9 "$AT1" me "$work/bad3.json"
expect_graph_error s9 400 RequestBodyRead "truncated JSON"
printf '%s' '{"message":{"subject":"s","body":{"contentType":"Text","content":"c"},"toRecipient":[{"emailAddress":{"address":"a@example.com"}}]}}' >"$work/bad4.json"
send s10 "$AT1" me "$work/bad4.json"
expect_graph_error s10 400 RequestBodyRead "misspelled property"
printf '%s' '{"message":{"subject":"s","body":{"contentType":"Markdown","content":"c"},"toRecipients":[{"emailAddress":{"address":"a@example.com"}}]}}' >"$work/bad5.json"
send s11 "$AT1" me "$work/bad5.json"
expect_graph_error s11 400 RequestBodyRead "bad contentType"
printf '%s' '{"message":{"subject":"s","body":{"contentType":"html","content":"c"},"toRecipients":[{"emailAddress":{"address":"a@example.com"}}],"bccRecipients":[{"emailAddress":{}}]}}' >"$work/bad6.json"
send s12 "$AT1" me "$work/bad6.json"
expect_graph_error s12 400 ErrorInvalidRecipients "bcc without address"
printf '%s' '[1,2,3]' >"$work/bad7.json"
send s13 "$AT1" me "$work/bad7.json"
expect_graph_error s13 400 RequestBodyRead "JSON array body"
head -c 4300000 /dev/zero | tr '\0' 'a' >"$work/big-mail"
send s14 "$AT1" me "$work/big-mail"
expect_graph_error s14 413 RequestEntityTooLarge "4.3 MB sendMail"
[ "$(mail_count)" = 2 ] || fail "rejected messages were stored"
ok "sendMail body validation: recipients, JSON syntax, unknown property, contentType, cc/bcc, 413; nothing stored"

admin POST /admin/refresh-tokens "{\"tenant\":\"$TENANT\",\"client_id\":\"$CLIENT\",\"refresh_token\":\"0.AXkA-readonly\",\"scopes\":[\"User.Read\"],\"user\":\"reader@contoso.com\"}"
token t17 "0.AXkA-readonly" "User.Read"
expect_status t17 200 "User.Read token"
send s15 "$(jget "$work/t17.body" d.access_token)"
expect_graph_error s15 403 ErrorAccessDenied "token without Mail.Send"
ok "token without Mail.Send: 403 ErrorAccessDenied"

# --- fault injection and counters -----------------------------------------------------

admin POST /admin/counters/reset
[ "$status" = 200 ] || fail "counters reset: HTTP $status"
admin POST /admin/faults '{"endpoint":"token","mode":"status","status":503,"count":1,"retry_after":7}'
[ "$status" = 201 ] || fail "POST /admin/faults: HTTP $status $(cat "$work/admin.body")"
token f1 "$RT3"
expect_aad_error f1 503 temporarily_unavailable 90033 "injected 503"
[ "$(header f1 retry-after)" = 7 ] || fail "injected 503: Retry-After is '$(header f1 retry-after)'"
token f2 "$RT3"
expect_status f2 200 "after the injected 503"
ok "fault: token 503 (count 1) with Retry-After: 7, then success"

admin POST /admin/faults '{"endpoint":"graph","mode":"status","status":429,"retry_after":3}'
send f3 "$AT1"
expect_graph_error f3 429 ApplicationThrottled "injected Graph 429"
[ "$(header f3 retry-after)" = 3 ] || fail "injected 429: no Retry-After: 3"
send f4 "$AT1"
expect_status f4 202 "sendMail after the injected 429"
ok "fault: Graph 429 ApplicationThrottled with Retry-After, then 202"

admin GET /admin/counters
jcheck "$work/admin.body" "d.token === 2 && d.token_by_grant.refresh_token === 2 && d.token_errors === 1 && d.token_success === 1 && d.send_mail === 2 && d.send_mail_accepted === 1 && d.send_mail_errors === 1 && d.faults_injected.token === 1 && d.faults_injected.graph === 1" \
	|| fail "counters wrong: $(cat "$work/admin.body")"
ok "counters: token 2 (refresh_token 2, errors 1), send_mail 2 (errors 1), faults counted"

admin POST /admin/faults '{"endpoint":"token","mode":"hang"}'
req f5 POST "https://127.0.0.1:$port/$TENANT/oauth2/v2.0/token" --max-time 1 -d grant_type=refresh_token
[ "$status" = curl-28 ] || fail "fault hang: expected a curl timeout (28), got $status"
admin POST /admin/faults '{"endpoint":"token","mode":"reset"}'
req f6 POST "https://127.0.0.1:$port/$TENANT/oauth2/v2.0/token" -d grant_type=refresh_token
case "$status" in curl-56 | curl-52 | curl-35) ;; *) fail "fault reset: expected a connection error, got $status" ;; esac
admin POST /admin/faults '{"endpoint":"graph","mode":"truncate"}'
send f7 "$AT1"
[ "$status" = curl-18 ] || fail "fault truncate: expected curl partial transfer (18), got $status"
admin POST /admin/faults '{"endpoint":"token","mode":"huge"}'
req f8 POST "https://127.0.0.1:$port/$TENANT/oauth2/v2.0/token" -d grant_type=refresh_token
[ "$status" = 200 ] && [ "$(wc -c <"$work/f8.body")" -ge 10000000 ] || fail "fault huge: expected a 10 MB 200 answer, got $status"
admin POST /admin/faults '{"endpoint":"graph","mode":"status","status":500,"count":5}'
admin DELETE /admin/faults
send f9 "$AT1"
expect_status f9 202 "sendMail after DELETE /admin/faults"
ok "faults: hang, reset, truncate, huge behave; DELETE /admin/faults clears pending ones"

# --- strict rotation (OAuth 2.1) ----------------------------------------------------------

admin POST /admin/config '{"rotation":"strict"}'
jcheck "$work/admin.body" "d.rotation === 'strict'" || fail "config: rotation not switched"
RTS="0.AXkA-strict-family"
admin POST /admin/refresh-tokens "{\"tenant\":\"$TENANT\",\"client_id\":\"$CLIENT\",\"refresh_token\":\"$RTS\",\"scopes\":[\"Mail.Send\"],\"user\":\"strict@contoso.com\"}"
token r1 "$RTS"
expect_status r1 200 "strict: first refresh"
RTS2=$(jget "$work/r1.body" d.refresh_token)
ATS2=$(jget "$work/r1.body" d.access_token)
token r2 "$RTS"
expect_aad_error r2 400 invalid_grant 700082 "strict: replayed (rotated-out) refresh token"
token r3 "$RTS2"
expect_aad_error r3 400 invalid_grant 700082 "strict: family revoked after replay"
send r4 "$ATS2" "users/strict@contoso.com"
expect_graph_error r4 401 InvalidAuthenticationToken "strict: access token of a revoked family"
admin POST /admin/config '{"rotation":"lenient"}'
ok "strict rotation: used refresh token revoked; replay revokes the whole family"

# --- admin revocation ----------------------------------------------------------------------

admin POST /admin/refresh-tokens "{\"tenant\":\"$TENANT\",\"client_id\":\"$CLIENT\",\"refresh_token\":\"0.AXkA-bob\",\"scopes\":[\"Mail.Send\"],\"user\":\"bob@contoso.com\"}"
token v1 "0.AXkA-bob"
expect_status v1 200 "bob: refresh before revocation"
admin POST /admin/refresh-tokens/revoke '{"user":"bob@contoso.com","error_code":50076}'
jcheck "$work/admin.body" "d.revoked === 2" || fail "revoke by user: $(cat "$work/admin.body")"
token v2 "$(jget "$work/v1.body" d.refresh_token)"
expect_aad_error v2 400 invalid_grant 50076 "revoked with error_code 50076"
admin POST /admin/refresh-tokens/revoke '{"refresh_token":"'"$RT1"'"}'
token v3 "$RT1"
expect_aad_error v3 400 invalid_grant 700082 "revoked single refresh token"
ok "admin revoke by user (error_code 50076) and by token value"

# --- access token lifetime ------------------------------------------------------------------

admin POST /admin/config '{"token_lifetime":1}'
token l1 "$RT3"
expect_status l1 200 "short-lived token"
expect_json l1 "d.expires_in === 1 && d.ext_expires_in === 1" "token_lifetime 1: expires_in"
ATL=$(jget "$work/l1.body" d.access_token)
RT4=$(jget "$work/l1.body" d.refresh_token)
sleep 2
send l2 "$ATL"
expect_graph_error l2 401 InvalidAuthenticationToken "expired access token"
admin POST /admin/config '{"token_lifetime":3599}'
ok "token_lifetime 1: expires_in 1, refused by sendMail after 2 s"

# --- no secrets in logs, state or admin output ------------------------------------------------

admin GET /admin/state
jcheck "$work/admin.body" "d.live_refresh_tokens_by_user['$USER'] >= 4 && d.live_access_tokens >= 1 && !('bob@contoso.com' in d.live_refresh_tokens_by_user)" \
	|| fail "GET /admin/state: $(cat "$work/admin.body")"
cp "$work/admin.body" "$work/state-summary.json"
for secret in "$RT1" "$RT2" "$RT3" "$RT4" "$RTS2" "$AT1" "$AT2" "$ATL"; do
	for f in "$log" "$work/state/state.json" "$work/state-summary.json"; do
		if grep -qF -- "$secret" "$f"; then fail "a token value appears in $(basename "$f")"; fi
	done
done
ok "GET /admin/state summarises; no token value in the log, state.json or /admin/state"

# --- robustness ----------------------------------------------------------------------------------

status=$(curl -sS -o "$work/admin.body" -w '%{http_code}' -X POST --data-binary '{nope' "http://127.0.0.1:$admin_port/admin/config") || status=curl
[ "$status" = 400 ] || fail "admin: bad JSON should be 400, got $status"
admin POST /admin/faults '{"endpoint":"token","mode":"explode"}'
[ "$status" = 400 ] || fail "admin: bad fault should be 400, got $status"
req x1 POST "https://localhost:$port/v1.0/me/sendMail" -H 'Authorization: Bearer' -H 'Content-Type: application/json' --data-binary ''
expect_graph_error x1 401 InvalidAuthenticationToken "empty bearer"
req x2 POST "https://127.0.0.1:$port/%ZZ/oauth2/v2.0/token" --data-binary $'\xff\xfe=\x00'
expect_aad_error x2 400 invalid_tenant 90002 "malformed tenant and body"
printf 'GARBAGE\r\n\r\n' | curl -sS --max-time 3 "telnet://127.0.0.1:$admin_port" >/dev/null 2>&1
kill -0 "$emu_pid" 2>/dev/null || fail "emulator died on malformed input"
ok "malformed admin JSON, bad fault, empty bearer, garbage tenant/body/HTTP: 400/401, still running"

# --- persistence across restart ------------------------------------------------------------------

token p1 "$RT4"
expect_status p1 200 "refresh before restart"
RT5=$(jget "$work/p1.body" d.refresh_token)
AT5=$(jget "$work/p1.body" d.access_token)
stop_emulator || fail "emulator did not exit cleanly on SIGTERM (status $?)"
[ ! -e "$work/ready.json" ] || fail "ready file left behind after shutdown"
grep -q 'SIGTERM: shutting down' "$log" || fail "no shutdown line in the log"
ok "SIGTERM: clean exit (status 0), ready file removed"

old_port=$port
old_admin=$admin_port
next_mail=$(printf '%06d' $(($(mail_count) + 1)))
start_emulator
[ "$port" = "$old_port" ] && [ "$admin_port" = "$old_admin" ] || fail "restart did not reuse the ports"
token p2 "$RT5"
expect_status p2 200 "last refresh token after restart"
send p3 "$AT5"
expect_status p3 202 "access token issued before restart"
[ -n "$(find "$work/state/mail" -maxdepth 1 -name "$next_mail-*.json")" ] || fail "mail counter did not continue after restart: $(ls "$work/state/mail")"
token p4 "0.AXkA-bob"
expect_aad_error p4 400 invalid_grant 50076 "revocation survives restart"
ok "restart on the same ports: refresh and access tokens still valid, revocations and mail numbering kept"

stop_emulator || fail "emulator did not exit cleanly at the end"
echo "$passed passed, 0 failed"
