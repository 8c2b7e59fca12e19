#!/usr/bin/env bash
# Users and ACLs of a dsfleet deployment on Apache Kafka (run inside the broker's container, against its
# container-local listener; compose: `docker compose exec kafka /acls/acls.sh ROLE [NAME]`):
#   acls.sh coordinator       the coordinator (user "coordinator")
#   acls.sh api               a separate `dsfleet serve` (user "api")
#   acls.sh agent NODE        one agent (user "agent-NODE")
# It creates the SCRAM-SHA-512 user with a random password, prints the password on stdout (store it in the
# client's sasl_password_file, 0600) and grants the role's operations on the six topics (TOPIC_PREFIX, if the
# fleet uses one), nothing else. Kafka ACLs name topics (or a prefix), never a record key or partition: an agent
# may read every node's AgentConfig (configs carry placeholders, never secrets) and could produce a report keyed
# as another node — the coordinator drops it, because it is not signed by that node's enrolled key. What ACLs do
# express, and this script grants nobody but the coordinator: writing AgentConfig and AgentCommand.
set -euo pipefail
role=${1:?usage: acls.sh coordinator|api|agent NODE}
bin=/opt/kafka/bin
server=${KAFKA_LOCAL:-127.0.0.1:9092}
prefix=${TOPIC_PREFIX:-}
case "$role" in
    coordinator) user=coordinator ;;
    api) user=api ;;
    agent) user="agent-${2:?usage: acls.sh agent NODE}" ;;
    *) echo "unknown role $role (coordinator, api or agent NODE)" >&2; exit 2 ;;
esac
password=$(head -c 24 /dev/urandom | base64 | tr -d '/+=')
"$bin/kafka-configs.sh" --bootstrap-server "$server" --alter --entity-type users --entity-name "$user" \
    --add-config "SCRAM-SHA-512=[password=$password]" >/dev/null
allow() {  # allow OPERATION... on TOPIC
    local topic=$1; shift
    local ops=()
    for op in "$@"; do ops+=(--operation "$op"); done
    "$bin/kafka-acls.sh" --bootstrap-server "$server" --add --allow-principal "User:$user" "${ops[@]}" \
        --topic "$prefix$topic" >/dev/null
}
group() {  # allow READ on consumer groups starting with PREFIX
    "$bin/kafka-acls.sh" --bootstrap-server "$server" --add --allow-principal "User:$user" --operation Read \
        --group "$1" --resource-pattern-type prefixed >/dev/null
}
case "$role" in
    coordinator)
        allow AgentConfig Write Read Describe
        allow AgentCommand Write Describe
        for t in AgentInfo AgentResponse UpdateConfig Refresh; do allow "$t" Read Describe; done
        for t in AgentInfo AgentCommand AgentConfig AgentResponse UpdateConfig Refresh; do allow "$t" Create DescribeConfigs AlterConfigs; done
        group dsfleet-coordinator
        ;;
    api)
        for t in UpdateConfig Refresh AgentCommand; do allow "$t" Write Describe; done
        allow AgentResponse Read Describe
        group dsfleet-api
        ;;
    agent)
        allow AgentConfig Read Describe
        allow AgentCommand Read Describe
        allow AgentInfo Write Describe
        allow AgentResponse Write Describe
        group dsfleet-agent
        ;;
esac
echo "$password"
