//! Layouts: how one task system lays its results out in Redis.
//!
//! A layout names the keys, decodes the stored bytes, says what wakes a waiter on a key and
//! which TTL rules hold. The stores stay layout-free primitives; a layout is one file here, so
//! another system's results are one more file, not edits across the store.
//!
//! | layout | keys | value | wakes a waiter | TTL |
//! |---|---|---|---|---|
//! | [`mognet`] | `{app}.mognet.result.{id}` (+ `/value`, `/metadata`, `/children`) | hashes of JSON cells | keyspace notifications (`K h g x`) | refreshed on read |
//! | [`omniq`] (experimental) | `omniq:results:result:{id}`, `omniq:tasks:task:{id}`, `omniq:events:…` | msgspec JSON strings | keyspace `set` events (`$`) | none unless the writer sets one; never by a read |
//! | [`celery`] | `{prefix}celery-task-meta-{id}`, `{prefix}celery-taskset-meta-{gid}` | one kombu JSON string | the writer's `PUBLISH` on the key's name | set by every write, never by a read |
//! | [`rigatoni`] | `{prefix}resume_token:{name}` (name opaque), `{prefix}lock:{name}` | one raw BSON document; the lock owner's id | keyspace `set` events (`K $ g x`) | set by every write, never by a read |

pub mod celery;
pub mod mognet;
pub mod omniq;
pub mod rigatoni;

/// A keyspace subscription a layout needs: the glob after `__keyspace@{db}__:` and the event
/// classes that must be on for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyspaceWatch {
    /// The key glob, e.g. `*.mognet.*`.
    pub glob: String,
    /// `notify-keyspace-events` classes besides `K`, e.g. `hgx`; empty: the keys are polled
    /// every `redis.poll_interval_ms` instead.
    pub classes: &'static str,
}

/// How a waiter on a key learns that the key changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wake {
    /// A keyspace notification for the key; the store subscribes once to
    /// `__keyspace@{db}__:{glob}` ([`Layout::keyspace_glob`]).
    Keyspace,
    /// A message on this exact pub/sub channel, which the writer publishes with every write;
    /// the message is only a hint (channels ignore the DB number): the key is read again.
    Channel(String),
}

/// What every layout answers.
pub trait Layout: Send + Sync {
    /// The layout's name, as in config sections, route prefixes and metric labels.
    fn name(&self) -> &'static str;

    /// What wakes a waiter on `key`.
    fn wake(&self, key: &str) -> Wake;

    /// The glob, after `__keyspace@{db}__:`, of the keyspace events this layout is woken by;
    /// `None` when its writers publish instead.
    fn keyspace_glob(&self) -> Option<&'static str>;

    /// The `notify-keyspace-events` classes besides `K` the layout's waits need (`""` when its
    /// writers publish instead).
    fn keyspace_classes(&self) -> &'static str;

    /// Whether reading a record resets its TTL.
    fn read_refreshes_ttl(&self) -> bool;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_declare_their_wake_source_and_ttl_rules() {
        let mognet = mognet::Mognet;
        assert_eq!(mognet.name(), "mognet");
        assert_eq!(mognet.wake("a.mognet.result.x"), Wake::Keyspace);
        assert_eq!(mognet.keyspace_glob(), Some("*.mognet.*"));
        assert!(mognet.read_refreshes_ttl());

        let celery = celery::Celery::new("app:".to_owned(), None, None);
        assert_eq!(celery.name(), "celery");
        let key = celery.task_key(&celery::TaskId::parse("t-1").unwrap());
        assert_eq!(celery.wake(&key), Wake::Channel("app:celery-task-meta-t-1".to_owned()));
        assert_eq!(celery.keyspace_glob(), None);
        assert!(!celery.read_refreshes_ttl());

        let rigatoni = rigatoni::Rigatoni::new("rigatoni:".to_owned());
        assert_eq!(rigatoni.name(), "rigatoni");
        assert_eq!(rigatoni.wake("rigatoni:resume_token:x"), Wake::Keyspace);
        assert_eq!(rigatoni.keyspace_glob(), Some("rigatoni:resume_token:*"));
        assert_eq!(rigatoni.keyspace_classes(), "$gx");
        assert!(!rigatoni.read_refreshes_ttl());
    }
}
