//! `[mqtt]`: where the MQTT sink connects, as whom, and under which topics.
//!
//! Present in the config file means on. Every field has a default except `host`;
//! [`MqttConfig::validate`] checks ranges and names the field that is wrong.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::config::ConfigError;

/// MQTT quality of service, as in the MQTT 3.1.1 specification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Qos {
    /// QoS 0: fire and forget.
    AtMostOnce,
    /// QoS 1: acknowledged, may be delivered twice.
    #[default]
    AtLeastOnce,
    /// QoS 2: delivered exactly once.
    ExactlyOnce,
}

impl From<Qos> for rumqttc::QoS {
    fn from(q: Qos) -> Self {
        match q {
            Qos::AtMostOnce => rumqttc::QoS::AtMostOnce,
            Qos::AtLeastOnce => rumqttc::QoS::AtLeastOnce,
            Qos::ExactlyOnce => rumqttc::QoS::ExactlyOnce,
        }
    }
}

/// A secret string (password) that never appears in `Debug` output or logs.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }

    /// The secret text; pass it straight to the client, never to a log.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// `[mqtt.tls]`: TLS (rustls with the ring provider). Present means on.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM file of the CA certificates that sign the broker's certificate; the
    /// system's roots when absent.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
}

/// `[mqtt]`: the MQTT and Home Assistant sink.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MqttConfig {
    /// Broker host name or address.
    pub host: String,
    /// Broker port; 1883, or 8883 with TLS.
    #[serde(default)]
    pub port: Option<u16>,
    /// TLS settings; plain TCP when absent.
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    /// User name, if the broker wants one.
    #[serde(default)]
    pub username: Option<String>,
    /// Password (prefer `password_file`, which keeps it out of the config).
    #[serde(default)]
    pub password: Option<Secret>,
    /// File whose first line is the password (read at start, never logged).
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// Name of this box in topics and Home Assistant ids; the host name when absent.
    /// Characters other than `[A-Za-z0-9_-]` become `_`.
    #[serde(default)]
    pub node_id: Option<String>,
    /// MQTT client id; `hark-<node_id>` when absent.
    #[serde(default)]
    pub client_id: Option<String>,
    /// Prefix of every hark topic; `hark/<node_id>` when absent.
    #[serde(default)]
    pub topic_prefix: Option<String>,
    /// QoS of every publication and of the Home Assistant status subscription.
    #[serde(default)]
    pub qos: Qos,
    /// Seconds between keep-alive pings; the broker declares hark gone (and sends
    /// the last will) after 1.5 times this without traffic.
    #[serde(default = "default_keep_alive")]
    pub keep_alive_s: u16,
    /// Longest wait between reconnection attempts, seconds (the wait doubles from
    /// 0.5 s up to this).
    #[serde(default = "default_reconnect_max")]
    pub reconnect_max_s: f32,
    /// Events kept while disconnected; beyond it the oldest are dropped (counted).
    #[serde(default = "default_buffer_events")]
    pub buffer_events: usize,
    /// Lines queued between the event hub and the sink's thread.
    #[serde(default = "default_queue")]
    pub queue: usize,
    /// Publish Home Assistant discovery configs.
    #[serde(default = "default_true")]
    pub discovery: bool,
    /// Home Assistant's discovery prefix (its status topic is `<prefix>/status`).
    #[serde(default = "default_discovery_prefix")]
    pub discovery_prefix: String,
    /// Device name shown in Home Assistant; `hark <node_id>` when absent.
    #[serde(default)]
    pub device_name: Option<String>,
}

const fn default_keep_alive() -> u16 {
    30
}
const fn default_reconnect_max() -> f32 {
    30.0
}
const fn default_buffer_events() -> usize {
    1000
}
const fn default_queue() -> usize {
    4096
}
const fn default_true() -> bool {
    true
}
fn default_discovery_prefix() -> String {
    "homeassistant".into()
}

impl MqttConfig {
    /// A config for `host` with every default.
    pub fn new(host: impl Into<String>) -> Self {
        Self {
            host: host.into(),
            port: None,
            tls: None,
            username: None,
            password: None,
            password_file: None,
            node_id: None,
            client_id: None,
            topic_prefix: None,
            qos: Qos::default(),
            keep_alive_s: default_keep_alive(),
            reconnect_max_s: default_reconnect_max(),
            buffer_events: default_buffer_events(),
            queue: default_queue(),
            discovery: true,
            discovery_prefix: default_discovery_prefix(),
            device_name: None,
        }
    }

    /// The port to connect to.
    pub fn port(&self) -> u16 {
        self.port
            .unwrap_or(if self.tls.is_some() { 8883 } else { 1883 })
    }

    /// The node id: `node_id`, or the host name, sanitised to `[A-Za-z0-9_-]`.
    pub fn node_id(&self) -> String {
        let raw = match &self.node_id {
            Some(n) => n.clone(),
            None => hostname().unwrap_or_else(|| "hark".into()),
        };
        sanitize_id(&raw)
    }

    /// The client id: `client_id` or `hark-<node_id>`.
    pub fn client_id(&self) -> String {
        self.client_id
            .clone()
            .unwrap_or_else(|| format!("hark-{}", self.node_id()))
    }

    /// The topic prefix without a trailing `/`: `topic_prefix` or `hark/<node_id>`.
    pub fn topic_prefix(&self) -> String {
        match &self.topic_prefix {
            Some(p) => p.trim_end_matches('/').to_string(),
            None => format!("hark/{}", self.node_id()),
        }
    }

    /// Relative paths (`password_file`, `tls.ca_file`) resolved against `base`, the
    /// config file's directory.
    pub fn resolve_paths(&mut self, base: &Path) {
        if let Some(p) = &self.password_file {
            if p.is_relative() {
                self.password_file = Some(base.join(p));
            }
        }
        if let Some(TlsConfig { ca_file: Some(p) }) = &self.tls {
            if p.is_relative() {
                self.tls = Some(TlsConfig {
                    ca_file: Some(base.join(p)),
                });
            }
        }
    }

    /// Checks every field; `path` is the config file, for messages.
    pub fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        let bad = |field: &str, value: String, expected: &str| ConfigError::Invalid {
            path: path.to_path_buf(),
            field: format!("mqtt.{field}"),
            value,
            expected: expected.to_string(),
        };
        if self.host.trim().is_empty() || self.host.contains(char::is_whitespace) {
            return Err(bad(
                "host",
                format!("{:?}", self.host),
                "a host name or address",
            ));
        }
        if self.port == Some(0) {
            return Err(bad("port", "0".into(), "a port in 1..=65535"));
        }
        if self.password.is_some() && self.password_file.is_some() {
            return Err(bad(
                "password_file",
                "(set with password)".into(),
                "either `password` or `password_file`, not both",
            ));
        }
        if (self.password.is_some() || self.password_file.is_some()) && self.username.is_none() {
            return Err(bad(
                "username",
                "(missing)".into(),
                "a user name when a password is given",
            ));
        }
        if let Some(n) = &self.node_id {
            if n.is_empty() || sanitize_id(n) != *n {
                return Err(bad(
                    "node_id",
                    format!("{n:?}"),
                    "a non-empty id of letters, digits, `_` and `-`",
                ));
            }
        }
        if let Some(c) = &self.client_id {
            if c.is_empty() || c.len() > 256 {
                return Err(bad(
                    "client_id",
                    format!("{c:?}"),
                    "a non-empty id of at most 256 bytes",
                ));
            }
        }
        if let Some(p) = &self.topic_prefix {
            check_topic(p.trim_end_matches('/'))
                .map_err(|e| bad("topic_prefix", format!("{p:?}"), &e))?;
        }
        check_topic(&self.discovery_prefix).map_err(|e| {
            bad(
                "discovery_prefix",
                format!("{:?}", self.discovery_prefix),
                &e,
            )
        })?;
        if !(5..=3600).contains(&self.keep_alive_s) {
            return Err(bad(
                "keep_alive_s",
                self.keep_alive_s.to_string(),
                "seconds in 5..=3600",
            ));
        }
        let r = self.reconnect_max_s;
        if !(r.is_finite() && (0.5..=3600.0).contains(&r)) {
            return Err(bad(
                "reconnect_max_s",
                r.to_string(),
                "seconds in 0.5..=3600",
            ));
        }
        if self.buffer_events > 1_000_000 {
            return Err(bad(
                "buffer_events",
                self.buffer_events.to_string(),
                "0..=1000000 events",
            ));
        }
        if !(1..=1_000_000).contains(&self.queue) {
            return Err(bad("queue", self.queue.to_string(), "1..=1000000 lines"));
        }
        if let Some(d) = &self.device_name {
            if d.trim().is_empty() {
                return Err(bad("device_name", format!("{d:?}"), "a non-empty name"));
            }
        }
        Ok(())
    }
}

/// Checks that `t` can be used as (a prefix of) a topic name to publish on: not
/// empty, no wildcards, no NUL, no empty levels at the ends.
pub fn check_topic(t: &str) -> Result<(), String> {
    if t.is_empty() {
        return Err("a non-empty topic".into());
    }
    if t.contains(['+', '#', '\0']) {
        return Err("a topic without the wildcards `+`, `#` or NUL".into());
    }
    if t.starts_with('/') || t.split('/').any(str::is_empty) {
        return Err("a topic without empty levels (`//`, leading `/`)".into());
    }
    Ok(())
}

/// Replaces every character outside `[A-Za-z0-9_-]` with `_` (Home Assistant's
/// rule for node and object ids in discovery topics).
pub fn sanitize_id(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The machine's host name, from the kernel.
fn hostname() -> Option<String> {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .find_map(|p| std::fs::read_to_string(p).ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<MqttConfig, String> {
        let c: MqttConfig = toml::from_str(text).map_err(|e| e.to_string())?;
        c.validate(Path::new("hark.toml"))
            .map_err(|e| e.to_string())?;
        Ok(c)
    }

    #[test]
    fn defaults_follow_the_node_id() {
        let c = parse("host = \"broker\"\nnode_id = \"kitchen\"\n").unwrap();
        assert_eq!(c.port(), 1883);
        assert_eq!(c.topic_prefix(), "hark/kitchen");
        assert_eq!(c.client_id(), "hark-kitchen");
        assert_eq!(c.qos, Qos::AtLeastOnce);
        assert!(c.discovery);
        assert_eq!(c.discovery_prefix, "homeassistant");
        let c = parse("host = \"b\"\n[tls]\n").unwrap();
        assert_eq!(c.port(), 8883);
    }

    #[test]
    fn qos_is_an_enum() {
        let c = parse("host = \"b\"\nqos = \"exactly_once\"\n").unwrap();
        assert_eq!(rumqttc::QoS::from(c.qos), rumqttc::QoS::ExactlyOnce);
        let e = parse("host = \"b\"\nqos = 1\n").unwrap_err();
        assert!(e.contains("qos") || e.contains("line 2"), "{e}");
        let e = parse("host = \"b\"\nqos = \"twice\"\n").unwrap_err();
        assert!(e.contains("at_least_once"), "{e}");
    }

    #[test]
    fn bad_values_name_their_field() {
        for (text, field) in [
            ("host = \"\"\n", "mqtt.host"),
            ("host = \"b\"\nport = 0\n", "mqtt.port"),
            ("host = \"b\"\nkeep_alive_s = 1\n", "mqtt.keep_alive_s"),
            ("host = \"b\"\nnode_id = \"a b\"\n", "mqtt.node_id"),
            (
                "host = \"b\"\ntopic_prefix = \"a/+/b\"\n",
                "mqtt.topic_prefix",
            ),
            (
                "host = \"b\"\ntopic_prefix = \"a//b\"\n",
                "mqtt.topic_prefix",
            ),
            (
                "host = \"b\"\nreconnect_max_s = 0.1\n",
                "mqtt.reconnect_max_s",
            ),
            ("host = \"b\"\npassword = \"x\"\n", "mqtt.username"),
            (
                "host = \"b\"\nusername = \"u\"\npassword = \"x\"\npassword_file = \"p\"\n",
                "mqtt.password_file",
            ),
            ("host = \"b\"\nqueue = 0\n", "mqtt.queue"),
        ] {
            let e = parse(text).unwrap_err();
            assert!(e.contains(field), "{text}: {e}");
        }
        let e = parse("host = \"b\"\nprot = 1\n").unwrap_err();
        assert!(e.contains("prot"), "{e}");
    }

    #[test]
    fn passwords_never_show_in_debug_output() {
        let c = parse("host = \"b\"\nusername = \"u\"\npassword = \"hunter2\"\n").unwrap();
        assert_eq!(c.password.as_ref().map(Secret::expose), Some("hunter2"));
        let dbg = format!("{c:?}");
        assert!(!dbg.contains("hunter2"), "{dbg}");
    }

    #[test]
    fn ids_are_sanitised() {
        assert_eq!(sanitize_id("my box.local"), "my_box_local");
        assert_eq!(sanitize_id("dog-bark_2"), "dog-bark_2");
        let c = MqttConfig::new("b");
        let n = c.node_id();
        assert!(!n.is_empty() && sanitize_id(&n) == n, "{n}");
    }

    #[test]
    fn relative_paths_follow_the_config_file() {
        let mut c = parse(
            "host = \"b\"\nusername = \"u\"\npassword_file = \"pw\"\n[tls]\nca_file = \"ca.pem\"\n",
        )
        .unwrap();
        c.resolve_paths(Path::new("/etc/hark"));
        assert_eq!(c.password_file.as_deref(), Some(Path::new("/etc/hark/pw")));
        assert_eq!(
            c.tls.and_then(|t| t.ca_file),
            Some(PathBuf::from("/etc/hark/ca.pem"))
        );
    }
}
