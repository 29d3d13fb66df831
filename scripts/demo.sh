#!/usr/bin/env bash
# The demo tour: start the lab fleet and run the main jobs against it, as a user sees them.
set -euo pipefail
cd "$(dirname "$0")/.."
export OPSKIT_INVENTORY=inventory/lab.yml
export OPSKIT_JOURNAL="${OPSKIT_JOURNAL:-$PWD/.demo-journal.jsonl}"

step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }

step opskit lab up --hosts "${LAB_HOSTS:-13}" --yes
step opskit inventory --graph
step opskit inventory -l 'app:db'
step opskit inventory check
echo
echo "The seed's fleet (inventory/production.yml) checked without connecting anywhere:"
step opskit -i inventory/production.yml inventory check
echo
echo "A misspelt setting is named with its file and line, and the key it was meant to be; exit 1"
set +e
typo=$(mktemp --suffix=.yml)
sed 's/data_directory:/data_dir:/' inventory/production.yml > "$typo"
step opskit -i "$typo" inventory check
echo "(exit status $?)"
rm -f "$typo"
set -e
step opskit exec -l app --yes -- uptime
step opskit exec --yes --stream -- 'echo "$OPSKIT_HOST is $(hostname) with /srv: $(ls /srv | wc -l) entries"'
echo
echo "A failing command on one host: exit 2, the others ok"
set +e
step opskit exec -l 'db' --yes -- 'test "$(hostname)" != db2 || { echo "db2 refuses" >&2; exit 7; }'
echo "(exit status $?)"
set -e

echo
echo "== Deploys: the sample app (a git repo the lab made) to every app host =="
step opskit deploy --ref v1 --dry-run
step opskit deploy --ref v1 --yes
step opskit deploy --ref v2 --yes
app1=$(opskit inventory -l app --json | python3 -c 'import json,sys; h=json.load(sys.stdin)["hosts"]; print(next(iter(h.values()))["address"])')
step python3 -c "import urllib.request; print(urllib.request.urlopen('http://$app1:8000/').read().decode())"
echo
echo "== The nginx tier: lb1 and lb2 in front of the app hosts =="
step opskit lb status                 # per lb host: nginx, nginx -t, active connections, upstream
lb1=$(opskit inventory -l lb1 --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["hosts"]["lb1"]["address"])')
step python3 -c "import urllib.request; print(urllib.request.urlopen('http://$lb1:8080/').read().decode())"
echo
echo "A broken release: the canary fails its health check and is rolled back; exit 2"
set +e
step opskit deploy --ref broken --yes
echo "(exit status $?)"
set -e
step opskit releases
step opskit rollback --yes
step opskit releases

echo
echo "== Snapshots: XFS on /data of db1 (a loop device), EBS volumes on the moto server =="
step opskit snapshot create -l db1 --yes
step opskit snapshot create -l db1 --yes --tag reason=demo
step opskit snapshot list -l db1
step opskit snapshot prune -l db1 --keep-last 1 --dry-run

echo
echo "== PostgreSQL: two clusters: main (db1 primary, db2-3 standbys, PgBouncer on lb1) and"
echo "   shard (shard1 primary, shard2 standby, a PgBouncer on each) =="
step opskit lab pg-reset --yes         # from a known start, also when the demo ran before
step opskit pg status                  # every cluster, each judged on its own, one summary line
primary=$(opskit pg status --cluster main --json | python3 -c 'import json,sys; print(next(n["name"] for n in json.load(sys.stdin)["nodes"] if n["role"] == "primary"))')
step opskit pg failover "$primary" --dry-run   # a host names its cluster
echo
echo "A runbook acts on one cluster: over both it is refused (exit 1), nothing changed"
step bash -c 'opskit pg failover --yes; echo "exit $?"'
echo
echo "The primary of main ($primary) crashes: its postgres is stopped at once"
step opskit exec -l "$primary" --yes -- 'runuser -u postgres -- /usr/lib/postgresql/15/bin/pg_ctl -D /data/pg/15/main -m immediate -w stop'
step bash -c 'opskit pg status; echo "exit $?"'   # main degraded (no primary), shard healthy
step opskit pg failover "$primary" --yes
step opskit pg rejoin "$primary" --yes
echo
echo "Fleet-wide again: main has its new primary, shard was never touched (same primary, timeline)"
step opskit pg status
echo
echo "Two operators paged at once: both switch back to $primary. The cluster lease (held on the"
echo "db and PgBouncer hosts) lets one act; the other is refused (exit 4), naming the holder."
step bash -c "opskit pg switchover -l db --to $primary --yes & sleep 0.3
  opskit pg switchover -l db --to $primary --yes; echo \"second operator: exit \$?\"; wait"

echo
echo "== Redis: three replication groups: main (redis1 master, redis2-3; AUTH as ACL user opskit),"
echo "   tls (redis1 -> redis2, TLS with client certificates), watched (redis2 -> redis3, 3 Sentinels) =="
step opskit lab redis-reset --yes      # from a known start, also when the demo ran before
step opskit redis status               # every group, judged each on its own; the Sentinels' view
step opskit redis switchover --to redis2:6379 --yes   # the instance names its group (main)
echo
echo "The master of main (redis2) dies: its redis-server is killed"
step opskit exec -l redis2 --yes -- 'kill -9 "$(cat /etc/opskit-lab/redis/redis.pid)"'
step bash -c 'opskit redis status; echo "exit $?"'   # main: no master; tls and watched healthy
step bash -c 'opskit redis promote --yes; echo "exit $?"'   # over three groups: refused (exit 1)
step opskit redis promote --group main --dry-run
step opskit redis promote --group main --yes
echo
echo "redis2 comes back (as a master, with stale data); rejoin makes it a replica"
step opskit exec -l redis2 --yes -- 'runuser -u redis -- redis-server /etc/opskit-lab/redis/redis.conf'
step opskit redis rejoin redis2:6379 --yes
step opskit redis backup --group main --yes
echo
echo "watched is managed by its Sentinels: promote hands the failover to them, switchover is refused"
step opskit redis promote --group watched --yes
step bash -c 'opskit redis switchover --to redis2:6381 --yes; echo "exit $?"'
step opskit redis status --group watched

echo
echo "== Cache warming: the same files under /data/cache on db2 and db3 =="
step opskit lab cache-data --yes       # db2 has a random subset of pages cached, db3 is cold
step opskit cache map db2 --path /data/cache
step opskit cache compare db2 db3 --path /data/cache
step opskit cache warm --from db2 --to db3 --path /data/cache --dry-run
step opskit cache warm --from db2 --to db3 --path /data/cache --yes
step opskit cache compare db2 db3 --path /data/cache

echo
echo "== Health: Nagios-style checks per host (exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN) =="
set +e
step opskit health --local
step opskit health -l 'db:redis'
echo "(exit status $?)"
set -e
step opskit health munin fetch
step opskit top -l app            # not a TTY here: one table instead of the live view
echo "== The same commands as Fabric tasks: same options, journal records and exit codes =="
step fab --list
step fab snapshot.create --limit db1 --yes
step fab pg.status --limit db
step fab redis.backup --limit redis --group main --dry-run
step opskit journal --last 10
echo
echo "The lab is still running; stop it with: .venv/bin/opskit lab down --yes"
