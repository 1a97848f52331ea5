//! The faults, each done for real: SIGKILL of a process (ours, Milvus,
//! FalkorDB), a stop and start of the machine's PostgreSQL, Redis and
//! RabbitMQ with the commands the machine uses (`scripts/services.sh`), and
//! a cut of the broker's network path. [`MachineGuard`] starts every server
//! again when the suite ends, however it ends: the machine's servers are
//! shared with every later test and CI run.

use crate::cluster::Cluster;
use std::process::Command;

const SERVICES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/services.sh");

/// Runs `scripts/services.sh VERB`; panics with its output when it fails.
pub fn services(verb: &str) {
    let out = Command::new("bash")
        .arg(SERVICES)
        .arg(verb)
        .output()
        .expect("bash runs");
    assert!(
        out.status.success(),
        "services.sh {verb} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Starts every server again on drop (each start is a no-op when it runs).
pub struct MachineGuard;

impl Drop for MachineGuard {
    fn drop(&mut self) {
        for verb in [
            "start-postgres",
            "start-redis",
            "start-rabbitmq",
            "start-falkordb",
            "start-milvus-process",
        ] {
            let _ = Command::new("bash").arg(SERVICES).arg(verb).status();
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    KillWorker,
    KillApi,
    KillMilvus,
    KillFalkorDb,
    RestartRabbitMq,
    RestartRedis,
    RestartPostgres,
    CutBroker,
    /// Overlapping: the vector store and the worker at once.
    KillMilvusAndWorker,
    /// Overlapping: the metadata store and the broker at once.
    RestartPostgresAndRabbitMq,
}

impl Fault {
    pub const ALL: [Fault; 10] = [
        Fault::KillWorker,
        Fault::KillApi,
        Fault::KillMilvus,
        Fault::KillFalkorDb,
        Fault::RestartRabbitMq,
        Fault::RestartRedis,
        Fault::RestartPostgres,
        Fault::CutBroker,
        Fault::KillMilvusAndWorker,
        Fault::RestartPostgresAndRabbitMq,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Fault::KillWorker => "kill -9 worker",
            Fault::KillApi => "kill -9 API",
            Fault::KillMilvus => "kill -9 Milvus",
            Fault::KillFalkorDb => "kill -9 FalkorDB",
            Fault::RestartRabbitMq => "RabbitMQ stop_app/start_app",
            Fault::RestartRedis => "Redis shutdown/start",
            Fault::RestartPostgres => "PostgreSQL stop/start",
            Fault::CutBroker => "broker network cut",
            Fault::KillMilvusAndWorker => "kill -9 Milvus + worker",
            Fault::RestartPostgresAndRabbitMq => "PostgreSQL + RabbitMQ down",
        }
    }

    /// Whether searches may fail while it lasts: the metadata store (or the
    /// API process itself) is down. Everything else degrades.
    pub fn search_may_fail(self) -> bool {
        matches!(
            self,
            Fault::KillApi | Fault::RestartPostgres | Fault::RestartPostgresAndRabbitMq
        )
    }

    pub fn inject(self, c: &mut Cluster) {
        match self {
            Fault::KillWorker => c.kill_worker(),
            Fault::KillApi => c.kill_api(),
            Fault::KillMilvus => services("kill-milvus"),
            Fault::KillFalkorDb => services("kill-falkordb"),
            Fault::RestartRabbitMq => services("stop-rabbitmq"),
            Fault::RestartRedis => services("stop-redis"),
            Fault::RestartPostgres => services("stop-postgres"),
            Fault::CutBroker => c.broker.cut(),
            Fault::KillMilvusAndWorker => {
                services("kill-milvus");
                c.kill_worker();
            }
            Fault::RestartPostgresAndRabbitMq => {
                services("stop-postgres");
                services("stop-rabbitmq");
            }
        }
    }

    pub fn restore(self, c: &mut Cluster) {
        match self {
            Fault::KillWorker => c.start_worker(),
            Fault::KillApi => c.start_api(),
            Fault::KillMilvus => services("start-milvus-process"),
            Fault::KillFalkorDb => services("start-falkordb"),
            Fault::RestartRabbitMq => services("start-rabbitmq"),
            Fault::RestartRedis => services("start-redis"),
            Fault::RestartPostgres => services("start-postgres"),
            Fault::CutBroker => c.broker.restore(),
            Fault::KillMilvusAndWorker => {
                services("start-milvus-process");
                c.start_worker();
            }
            Fault::RestartPostgresAndRabbitMq => {
                services("start-rabbitmq");
                services("start-postgres");
            }
        }
    }
}
