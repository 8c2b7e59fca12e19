#!/usr/bin/env bash
# A certificate authority and the broker's certificate for the compose deployment (openssl):
#   deploy/kafka/make-certs.sh DIR HOSTNAME [HOSTNAME...]
# DIR/ca.pem goes to every client (ssl.ca.location); DIR/broker.pem (key + chain, 0600) stays with the broker.
# Use your own CA instead when you have one: the broker needs broker.pem, the clients ca.pem.
set -euo pipefail
dir=${1:?usage: make-certs.sh DIR HOSTNAME [HOSTNAME...]}
shift
[ $# -ge 1 ] || { echo "usage: make-certs.sh DIR HOSTNAME [HOSTNAME...]" >&2; exit 2; }
mkdir -p "$dir" && chmod 700 "$dir"
cd "$dir"
[ -e ca.key ] || openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \
    -subj "/CN=dsfleet Kafka CA" -keyout ca.key -out ca.pem 2>/dev/null
san=$(printf 'DNS:%s,' "$@" kafka localhost)
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$1" -keyout broker.key -out broker.csr 2>/dev/null
openssl x509 -req -in broker.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 825 \
    -extfile <(printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth\n' "${san%,}") -out broker.crt 2>/dev/null
cat broker.key broker.crt ca.pem > broker.pem
chmod 600 ca.key broker.key broker.pem
rm -f broker.csr
echo "wrote $dir/ca.pem (for every client) and $dir/broker.pem (the broker's key and chain)"
