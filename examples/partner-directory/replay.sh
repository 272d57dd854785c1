#!/usr/bin/env bash
# The blog's scenario with curl, step by step, in the current directory:
#   bash examples/partner-directory/replay.sh
# HTTP_PORT, HTTPS_PORT and PARTNERGATE (the command) may be set; run it in an empty folder.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
PG=${PARTNERGATE:-partnergate}
HTTP=127.0.0.1:${HTTP_PORT:-18080}
HTTPS=127.0.0.1:${HTTPS_PORT:-18443}
export PARTNERGATE_DB=sqlite:///$PWD/partnergate.db PARTNERGATE_DATA_DIR=$PWD/data

# 1. A development PKI: a CA, the server's certificate, Sender_CERT's client certificate
#    (sender_cert.key/.crt for curl, sender_cert.p12 with password "changeit" for SoapUI).
$PG pki init pki
$PG pki server pki --host localhost --host 127.0.0.1
echo changeit | $PG pki client pki sender_cert --password-stdin

# 2. Local users (the administrator, Sender_BASIC's user, the receivers' users) and the
#    OAuth client of Sender_OAUTH.
echo admin-pw | $PG users add admin --role AuthGroup_TenantPartnerDirectoryConfigurator --password-stdin
echo basic-pw | $PG users add user_for_sender_basic --password-stdin
echo r1-pw | $PG users add user_receiver_1 --role receiver_1.send --password-stdin
echo r2-pw | $PG users add user_receiver_2 --role receiver_2.send --password-stdin
echo oauth-secret | $PG clients add client_sender_oauth --secret-stdin

# 3. The server: HTTP for the API and the Basic and OAuth senders, mTLS for Sender_CERT.
$PG serve --http "$HTTP" --https "$HTTPS" --tls-cert pki/server.crt --tls-key pki/server.key \
  --client-ca pki/ca.crt --flows "$HERE" > server.log 2>&1 &
SERVER=$!
trap 'kill $SERVER' EXIT
for _ in $(seq 1 100); do curl -sf "http://$HTTP/health" > /dev/null && break; sleep 0.1; done
API=http://$HTTP/api/v1

# 4. A CSRF token, bound to the session cookie in "jar", for the writes below.
TOKEN=$(curl -s -u admin:admin-pw -c jar -H 'X-CSRF-Token: Fetch' -D - -o /dev/null "$API/" \
  | tr -d '\r' | awk -F': ' 'tolower($1)=="x-csrf-token" {print $2}')
post() {
  curl -s -o /dev/null -w "%{http_code} POST $1\n" -u admin:admin-pw -b jar \
    -H "X-CSRF-Token: $TOKEN" -H 'Content-Type: application/json' -d "$2" "$API/$1"
}

# 5. The blog's Step 1: the certificate-to-user mapping (the body is the blog's:
#    {"User": ..., "Certificate": base64 of the PEM}).
post CertificateUserMappings "$($PG pki mapping-body pki/sender_cert.crt --user user_for_sender_cert)"

# 6. The blog's Step 2 and its predecessor's: the authorised users of the three senders.
post AuthorizedUsers '{"User":"user_for_sender_cert","Pid":"Sender_CERT"}'
post AuthorizedUsers '{"User":"user_for_sender_basic","Pid":"Sender_BASIC"}'
post AuthorizedUsers '{"User":"oauth_client_client_sender_oauth","Pid":"Sender_OAUTH"}'

# 7. The receivers' addresses and credentials.
post StringParameters "{\"Pid\":\"Receiver_1\",\"Id\":\"ADDRESS\",\"Value\":\"http://$HTTP/cxf/receiver_1\"}"
post StringParameters "{\"Pid\":\"Receiver_2\",\"Id\":\"ADDRESS\",\"Value\":\"http://$HTTP/cxf/receiver_2\"}"
post UserCredentialParameters '{"Pid":"Receiver_1","Id":"USER","User":"user_receiver_1","Password":"r1-pw"}'
post UserCredentialParameters '{"Pid":"Receiver_2","Id":"USER","User":"user_receiver_2","Password":"r2-pw"}'

# 8. The messages: Basic, OAuth bearer, client certificate (PEM files, then the PKCS#12).
MSG='<Message><Receiver>Receiver_2</Receiver></Message>'
SEND=/http/partner_directory
curl -s -u user_for_sender_basic:basic-pw -H 'Content-Type: text/xml' -d "$MSG" "http://$HTTP$SEND"; echo
BEARER=$(curl -s -u client_sender_oauth:oauth-secret -d grant_type=client_credentials "http://$HTTP/oauth/token" \
  | sed 's/.*"access_token":"\([^"]*\)".*/\1/')
curl -s -H "Authorization: Bearer $BEARER" -H 'Content-Type: text/xml' -d "$MSG" "http://$HTTP$SEND"; echo
curl -s --cacert pki/ca.crt --cert pki/sender_cert.crt --key pki/sender_cert.key \
  -H 'Content-Type: text/xml' -d "$MSG" "https://$HTTPS$SEND"; echo
curl -s --cacert pki/ca.crt --cert-type P12 --cert pki/sender_cert.p12:changeit \
  -H 'Content-Type: text/xml' -d "$MSG" "https://$HTTPS$SEND"; echo

# 9. Who the certificate makes the caller, and why.
curl -s --cacert pki/ca.crt --cert pki/sender_cert.crt --key pki/sender_cert.key "https://$HTTPS/whoami"; echo
