# Sourced by the cluster bench scripts.
# wait_formed DIR NODES: waits (30 s at most) until each node's log
# DIR/n<i>.log shows all its NODES - 1 peers up; prints the logs' tails
# and fails if the cluster did not form.
wait_formed() {
  local dir=$1 nodes=$2 up=0
  for _ in $(seq 300); do
    up=0
    for i in $(seq 0 $(( nodes - 1 ))); do
      [ "$(grep -c 'cluster peer up' "$dir/n$i.log" || true)" -ge $(( nodes - 1 )) ] && up=$(( up + 1 ))
    done
    [ "$up" -eq "$nodes" ] && return 0
    sleep 0.1
  done
  echo "the cluster did not form"
  tail -n 5 "$dir"/n*.log
  return 1
}
