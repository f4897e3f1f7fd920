//! Topic names and Home Assistant MQTT discovery payloads.
//!
//! hark announces one device per node with:
//! - one `binary_sensor` (`device_class: sound`) per enabled label, state `ON`/`OFF`
//!   on `<prefix>/<label>/state`, attributes on `<prefix>/<label>/attributes`;
//! - an "any sound" `binary_sensor`, `ON` while any label is `ON`
//!   (`<prefix>/any_sound/state`);
//! - one `event` entity whose `event_types` are the enabled labels, fired on every
//!   start through `<prefix>/detected` (`{"event_type": label, ...}`).
//!
//! Every entity shares the availability topic `<prefix>/availability`
//! (`online`/`offline`, retained, `offline` being the last will). Disabled labels get
//! an empty retained config, which makes Home Assistant remove their entity.
//! Payload keys are sorted (serde_json's map), so payloads are byte-for-byte stable.

use serde_json::{json, Value};

use super::config::sanitize_id;

/// Payload of the availability topic while connected.
pub const ONLINE: &str = "online";
/// Payload of the availability topic after a clean stop, and the last will.
pub const OFFLINE: &str = "offline";
/// State payload of an active label.
pub const ON: &str = "ON";
/// State payload of an inactive label.
pub const OFF: &str = "OFF";
/// Topic level of the "any sound" sensor.
pub const ANY_SOUND: &str = "any_sound";
/// Topic levels under the prefix that hark uses itself; labels may not take them.
pub const RESERVED_LEVELS: [&str; 5] = ["availability", "events", "detected", "status", ANY_SOUND];

/// Every topic hark uses, from its prefixes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics {
    /// hark's prefix, e.g. `hark/kitchen` (no trailing `/`).
    pub prefix: String,
    /// Home Assistant's discovery prefix, e.g. `homeassistant`.
    pub discovery_prefix: String,
    /// Node id (sanitised), the node level of discovery topics.
    pub node_id: String,
}

impl Topics {
    /// `<prefix>/availability`: `online`/`offline`, retained.
    pub fn availability(&self) -> String {
        format!("{}/availability", self.prefix)
    }
    /// `<prefix>/<label>/state`: `ON`/`OFF`, retained.
    pub fn state(&self, label: &str) -> String {
        format!("{}/{label}/state", self.prefix)
    }
    /// `<prefix>/<label>/attributes`: JSON of the last event, retained.
    pub fn attributes(&self, label: &str) -> String {
        format!("{}/{label}/attributes", self.prefix)
    }
    /// `<prefix>/any_sound/state`: `ON` while any label is `ON`, retained.
    pub fn any_state(&self) -> String {
        self.state(ANY_SOUND)
    }
    /// `<prefix>/events`: every start/stop line of the JSON protocol.
    pub fn events(&self) -> String {
        format!("{}/events", self.prefix)
    }
    /// `<prefix>/detected`: `{"event_type": label, ...}` on every start (HA `event`).
    pub fn detected(&self) -> String {
        format!("{}/detected", self.prefix)
    }
    /// `<prefix>/status`: the protocol's `status` lines.
    pub fn status(&self) -> String {
        format!("{}/status", self.prefix)
    }
    /// `<discovery_prefix>/status`: Home Assistant's birth (`online`) message.
    pub fn ha_status(&self) -> String {
        format!("{}/status", self.discovery_prefix)
    }
    /// Discovery config topic of a label's binary sensor.
    pub fn label_config(&self, label: &str) -> String {
        format!(
            "{}/binary_sensor/{}/{}/config",
            self.discovery_prefix,
            self.node_id,
            sanitize_id(label)
        )
    }
    /// Discovery config topic of the "any sound" binary sensor.
    pub fn any_config(&self) -> String {
        format!(
            "{}/binary_sensor/{}/{ANY_SOUND}/config",
            self.discovery_prefix, self.node_id
        )
    }
    /// Discovery config topic of the `event` entity.
    pub fn event_config(&self) -> String {
        format!(
            "{}/event/{}/sound_event/config",
            self.discovery_prefix, self.node_id
        )
    }
}

/// Why a label cannot be published over MQTT.
pub fn check_label(label: &str) -> Result<(), String> {
    if label.is_empty() || label.contains(['/', '+', '#', '\0']) {
        return Err("a non-empty label without `/`, `+`, `#` or NUL".into());
    }
    if RESERVED_LEVELS.contains(&label) {
        return Err(format!(
            "a label other than hark's own topic levels ({})",
            RESERVED_LEVELS.join(", ")
        ));
    }
    Ok(())
}

/// The device block and origin shared by every entity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    /// Node id (sanitised).
    pub node_id: String,
    /// Name shown in Home Assistant.
    pub name: String,
    /// Model name (from the model file).
    pub model: String,
    /// hark's version.
    pub sw_version: String,
}

impl Device {
    fn unique_id(&self, object: &str) -> String {
        format!("hark_{}_{}", self.node_id, sanitize_id(object))
    }

    fn block(&self) -> Value {
        json!({
            "identifiers": [format!("hark_{}", self.node_id)],
            "name": self.name,
            "model": self.model,
            "manufacturer": "hark",
            "sw_version": self.sw_version,
        })
    }

    fn origin(&self) -> Value {
        json!({"name": "hark", "sw_version": self.sw_version})
    }

    fn binary_sensor(&self, topics: &Topics, name: &str, object: &str, state: String) -> Value {
        json!({
            "name": name,
            "unique_id": self.unique_id(object),
            "device_class": "sound",
            "state_topic": state,
            "payload_on": ON,
            "payload_off": OFF,
            "availability_topic": topics.availability(),
            "payload_available": ONLINE,
            "payload_not_available": OFFLINE,
            "device": self.block(),
            "origin": self.origin(),
        })
    }

    /// Config of a label's binary sensor.
    pub fn label_config(&self, topics: &Topics, label: &str) -> Value {
        let mut v = self.binary_sensor(topics, &pretty(label), label, topics.state(label));
        if let Value::Object(m) = &mut v {
            m.insert(
                "json_attributes_topic".into(),
                Value::String(topics.attributes(label)),
            );
        }
        v
    }

    /// Config of the "any sound" binary sensor.
    pub fn any_config(&self, topics: &Topics) -> Value {
        self.binary_sensor(topics, "Any sound", ANY_SOUND, topics.any_state())
    }

    /// Config of the `event` entity whose event types are `labels`.
    pub fn event_config(&self, topics: &Topics, labels: &[String]) -> Value {
        json!({
            "name": "Sound event",
            "unique_id": self.unique_id("sound_event"),
            "state_topic": topics.detected(),
            "event_types": labels,
            "availability_topic": topics.availability(),
            "payload_available": ONLINE,
            "payload_not_available": OFFLINE,
            "device": self.block(),
            "origin": self.origin(),
        })
    }
}

/// A label as an entity name: `dog_bark` → `Dog bark`.
pub fn pretty(label: &str) -> String {
    let spaced = label.replace('_', " ");
    let mut c = spaced.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => spaced,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topics() -> Topics {
        Topics {
            prefix: "hark/kitchen".into(),
            discovery_prefix: "homeassistant".into(),
            node_id: "kitchen".into(),
        }
    }

    fn device() -> Device {
        Device {
            node_id: "kitchen".into(),
            name: "hark kitchen".into(),
            model: "crnn-small".into(),
            sw_version: "0.1.0".into(),
        }
    }

    #[test]
    fn label_config_has_every_home_assistant_field() {
        let v = device().label_config(&topics(), "dog_bark");
        assert_eq!(
            v,
            json!({
                "name": "Dog bark",
                "unique_id": "hark_kitchen_dog_bark",
                "device_class": "sound",
                "state_topic": "hark/kitchen/dog_bark/state",
                "json_attributes_topic": "hark/kitchen/dog_bark/attributes",
                "payload_on": "ON",
                "payload_off": "OFF",
                "availability_topic": "hark/kitchen/availability",
                "payload_available": "online",
                "payload_not_available": "offline",
                "device": {
                    "identifiers": ["hark_kitchen"],
                    "name": "hark kitchen",
                    "model": "crnn-small",
                    "manufacturer": "hark",
                    "sw_version": "0.1.0"
                },
                "origin": {"name": "hark", "sw_version": "0.1.0"}
            })
        );
        assert_eq!(
            topics().label_config("dog bark"),
            "homeassistant/binary_sensor/kitchen/dog_bark/config"
        );
    }

    #[test]
    fn event_entity_lists_the_labels() {
        let v = device().event_config(&topics(), &["speech".into(), "door".into()]);
        assert_eq!(v["event_types"], json!(["speech", "door"]));
        assert_eq!(v["state_topic"], "hark/kitchen/detected");
        assert_eq!(v["unique_id"], "hark_kitchen_sound_event");
        assert_eq!(
            topics().event_config(),
            "homeassistant/event/kitchen/sound_event/config"
        );
        let a = device().any_config(&topics());
        assert_eq!(a["state_topic"], "hark/kitchen/any_sound/state");
        assert_eq!(a["device_class"], "sound");
    }

    #[test]
    fn labels_that_break_topics_are_refused() {
        assert!(check_label("dog_bark").is_ok());
        assert!(check_label("Dog bark").is_ok());
        for bad in ["", "a/b", "a+", "#", "events", "any_sound"] {
            assert!(check_label(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn pretty_names() {
        assert_eq!(pretty("dog_bark"), "Dog bark");
        assert_eq!(pretty("x"), "X");
        assert_eq!(pretty(""), "");
    }
}
