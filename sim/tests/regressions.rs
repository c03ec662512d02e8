//! Seeds that once showed a bug, kept so the bug stays fixed. Each replays exactly the run that
//! failed (same seed, same fault classes, same durations) and must now satisfy every oracle.
//! The replay command for a failure is printed with it.

use std::time::Duration;

use sim::world::faults::FaultClass;
use sim::world::run::{RunConfig, run};

mod support;

/// The `sim` command line's defaults before failover was on in every run (`sim --no-failover`),
/// which the seeds below were found with.
fn sweep_default(seed: u64) -> RunConfig {
    RunConfig {
        seed,
        duration: Duration::from_secs(600),
        heal: Duration::from_secs(180),
        failover_everywhere: false,
        ..RunConfig::default()
    }
}

/// A run of every listed class, as `sim --seed N --every-class --faults ...` runs it.
fn targeted(seed: u64, classes: &str, duration: u64, heal: u64) -> RunConfig {
    let classes = classes.split(',').map(|c| c.parse::<FaultClass>().unwrap_or_else(|e| panic!("{e}"))).collect();
    RunConfig {
        seed,
        duration: Duration::from_secs(duration),
        heal: Duration::from_secs(heal),
        classes,
        every_class: true,
        failover_everywhere: false,
        ..RunConfig::default()
    }
}

/// A run of `sim --runs 24 --duration 300 --faults` with [`FAILOVER_CLASSES`] (the README's
/// failover command, its classes in the order these seeds were found with: the order decides
/// what each seed draws), failover on in half the clusters.
fn failover_sweep(seed: u64) -> RunConfig {
    let classes =
        FAILOVER_CLASSES.split(',').map(|c| c.parse::<FaultClass>().unwrap_or_else(|e| panic!("{e}"))).collect();
    RunConfig {
        seed,
        duration: Duration::from_secs(300),
        heal: Duration::from_secs(180),
        classes,
        ..RunConfig::default()
    }
}

fn replay(config: &RunConfig) {
    support::assert_passes(&run(config), config);
}

macro_rules! regression {
    ($($name:ident: $config:expr;)*) => {
        $(
            #[test]
            fn $name() {
                replay(&$config);
            }
        )*
    };
}

const FAILOVER_CLASSES: &str = "main-kill,main-node-loss,main-partition-operator,main-partition-replicas,\
main-partition-all,main-returns,failover-twice,main-flap,failover-crash,switchover,pod-kill";
const SCALE_UNDER_STALE_VIEWS: &str = "pod-delete,image-change,stale-view,scale,dropped-notifications";
const NODE_AND_PARTITION: &str = "pod-kill,pod-delete,volume-loss,partition-operator,partition-replication,\
partition-one-way,node-loss,hung,slow-disk,blocked-replication,admission-refusal,invalid-spec";
const WRITE_VOLUME_AND_SPEC: &str = "pod-kill,pod-delete,volume-loss,partition-operator,partition-replication,\
partition-one-way,scale,mode-change,schedule-change,image-change,storage-change,write-volume-loss";

regression! {
    // A reconcile marked its validation job running, then failed on an API write before handing
    // the job over: nothing ran it, and no check of the cluster ran again (ReadConnectivity
    // stayed False after every instance answered). Later the same seed found a test write that
    // timed out and committed after its cleanup had run: the node stayed in the data, as the
    // cluster was scaled to no replicas and no replication test came to remove it.
    seed_39_a_claimed_check_is_marked_running_only_when_it_is_handed_over: sweep_default(39);
    // The MAIN's SHOW REPLICAS was read at the start of a look that then waited 5 s on a hung
    // replica: the plan dropped a registration that had recovered in the meantime.
    seed_96_registrations_are_read_once_every_role_is_known: sweep_default(96);
    // With failover on in half the clusters (as the default sweep runs since): a SYNC MAIN lost
    // mid-commit left a write on one replica and not on the one promoted. The operator rightly reported that replica diverged
    // (its registration refused with Error: 3, its row's data_info empty); the truth, which
    // looked only at rows shown `diverged`, called the claim false. The truth now tests the data.
    // Later, with the confirming look spanning the end of the delay, the status was written while
    // the promoted MAIN had no rows yet: the truth took that replica, ahead in the MAIN's own
    // lineage by the lost MAIN's last commit, for a sign that the MAIN had lost its data.
    seed_71_with_failover_divergence_is_judged_by_the_data: RunConfig { failover_everywhere: true, ..sweep_default(71) };
    // A second readiness flap of the same MAIN replaced the first mid-stretch: its NotReady
    // stretch joined the first's into one of 5.1 s, and the operator, counting from the Ready
    // condition's transition time truncated to the second, promoted a replica 4.7 s into it.
    // The sim flaps a pod once at a time; the operator reads a whole-second transition time as
    // the end of its second.
    seed_24_of_the_failover_sweep_flaps_one_at_a_time: failover_sweep(24);
    // An ASYNC old MAIN that took a write after it was replaced, registered on a MAIN while its
    // pod had just crashed: the row stayed `invalid` (it obeyed another MAIN), so the divergence
    // showed only once the operator registered it again after the row's grace.
    seed_15_of_the_failover_sweep_divergence_behind_an_invalid_row: failover_sweep(15);
    // A status written from an old view put back a claimed snapshot tick and the running backup,
    // and the snapshot ran again (7 snapshots for 5 ticks).
    seed_3_an_old_view_cannot_put_back_a_claimed_tick: sweep_default(3);
    // The cluster bootstrapped after the run took the source's first image, older than the one
    // an image change had moved it to, and its restore was (rightly) refused.
    seed_1191_the_bootstrap_uses_the_source_image_of_now: sweep_default(1191);
    // Replicas invalid behind partitions, the operator crashing before its idle requeue; later
    // also the write volume lost while the operator was down, and clients writing to the empty
    // MAIN before its label could go: it held data, but less than the replicas.
    seed_1008_write_volume_lost_while_the_operator_is_down: sweep_default(1008);
    // A pod crashed between the operator's look and its label write: not the operator's fault.
    seed_1027_a_crash_between_look_and_write: sweep_default(1027);
    // 3.0 SHOW REPLICAS flips SYNC replicas invalid on a commit in flight; the liveness re-check
    // after the calm watch gave the truthful status only 2 s to recover.
    seed_1022_the_final_check_allows_a_reconcile: sweep_default(1022);
    // A MAIN refilled from an older replica while the newest was away was used at once.
    seed_1042_a_refilled_main_waits_for_the_newest_replica: sweep_default(1042);
    // A replica on a lost node stalled behind its peers while the MAIN was gone too.
    // Also, with the leader-election faults: two latency faults on one link, the first one's
    // end resetting the link under the second.
    seed_1071_a_replica_short_of_its_peers: sweep_default(1071);
    // A one-way partition between pods lost TCP data for good (turmoil drops, TCP retransmits).
    seed_1090_replication_links_hold_across_a_one_way_partition: sweep_default(1090);
    // A replica recovered WAL files of another database UUID and stayed invalid for ever, and
    // the operator re-registered it every round once its invalid grace had passed.
    seed_1102_recovery_skips_wal_of_another_database: sweep_default(1102);
    // The heal wiped the claims check's memory of what the running operator had looked at.
    seed_1141_the_heal_keeps_the_rounds_looks: sweep_default(1141);
    seed_1168_the_heal_keeps_the_rounds_looks: sweep_default(1168);
    // A wrong read route on a lost node: only the node-monitor grace could take it away.
    seed_1155_a_route_on_a_lost_node: sweep_default(1155);
    // DataDivergence stayed a stale False about a MAIN that had just come back empty.
    seed_1166_divergence_unknown_while_uncounted: sweep_default(1166);
    // A replica registered mid-commit missed a write; the MAIN's node was lost right after.
    seed_1188_a_stale_replica_while_the_main_is_gone: sweep_default(1188);
    // A scale-up served as a stale view: the operator dropped wanted, healthy replicas.
    seed_5055_no_drop_on_a_stale_view: targeted(5055, SCALE_UNDER_STALE_VIEWS, 600, 180);
    seed_5091_no_drop_on_a_stale_view: targeted(5091, SCALE_UNDER_STALE_VIEWS, 600, 180);
    // The drop oracle once judged against the newest spec, not the one the operator acted on.
    seed_5004_drops_are_judged_against_the_acted_spec: targeted(5004, SCALE_UNDER_STALE_VIEWS, 600, 180);
    // 2.21 blocks SHOW REPLICAS behind a one-way partition; a replica that stopped following
    // kept its label until node counts were used as evidence.
    seed_31_a_stalled_replica_while_show_replicas_blocks: targeted(31, NODE_AND_PARTITION, 150, 150);
    // The only replica holding data was deleted while the write volume was lost: the empty MAIN
    // took writes because the missing pod did not count as possibly holding data.
    seed_21_a_deleted_replica_still_holds_the_data: targeted(21, WRITE_VOLUME_AND_SPEC, 150, 150);
    // Found by the default sweep while its oracles were being written: routes removed on the
    // operator's own blindness, snapshot loops, self-triggered reconciles, SYNC stalls.
    seed_1_default_sweep: sweep_default(1);
    seed_3_default_sweep: sweep_default(3);
    seed_5_default_sweep: sweep_default(5);
    seed_7_default_sweep: sweep_default(7);
    // A replica lagging past the threshold for a moment in a calm cluster: the lag verdict
    // turning False and back is the scheduled measurement's result, not churn.
    seed_21_a_lag_verdict_is_scheduled_work: targeted(21, "operator-rollout,pod-kill,mode-change", 600, 180);
    seed_10_default_sweep: sweep_default(10);
    seed_12_default_sweep: sweep_default(12);
    // Also: a reconcile's last status write and the Lease's release in one millisecond (the
    // order of the records, not their time, says the write came while it still held the Lease).
    seed_15_default_sweep: sweep_default(15);
    seed_18_default_sweep: sweep_default(18);
    seed_45_default_sweep: sweep_default(45);
    seed_59_default_sweep: sweep_default(59);
    seed_62_default_sweep: sweep_default(62);
    seed_70_default_sweep: sweep_default(70);
    seed_74_default_sweep: sweep_default(74);
    seed_87_default_sweep: sweep_default(87);
    seed_96_default_sweep: sweep_default(96);
}
