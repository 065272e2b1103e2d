#!/bin/sh
# N6 of one slice's UPF (issue 16, item 8): the UE subnet's gateway on ogstun, IPv4 forwarding in the pod, and
# NAT of the UE subnet to the pod's eth0, the data network (the cluster's pods and Services, the slice's dn
# Service among them, and beyond through the node). Then exec the UPF ("$@"). As the open5gs-k8s UPF wrapper
# (niloysh/open5gs-k8s, msd/bases/open5gs-base/upf1/wrapper.sh) and Gradiant's open5gs-upf chart (createDev,
# enableNAT) do, but idempotent: a restarted container finds its device and rule and adds nothing twice.
# UE_SUBNET (network/prefix) and UE_GATEWAY come from the slice's overlay and match its upf.yaml session.
set -eu
: "${UE_SUBNET:?UE_SUBNET (the slice's UE subnet, e.g. 10.45.0.0/24) is not set}"
: "${UE_GATEWAY:?UE_GATEWAY (the UPF's address in it, e.g. 10.45.0.1) is not set}"
ip link show ogstun >/dev/null 2>&1 || ip tuntap add name ogstun mode tun
ip addr replace "${UE_GATEWAY}/${UE_SUBNET#*/}" dev ogstun
ip link set ogstun up
echo 1 > /proc/sys/net/ipv4/ip_forward
iptables -t nat -C POSTROUTING -s "$UE_SUBNET" ! -o ogstun -j MASQUERADE 2>/dev/null \
  || iptables -t nat -A POSTROUTING -s "$UE_SUBNET" ! -o ogstun -j MASQUERADE
exec "$@"
