//! Routing: who may learn of a hit (FORMATS.md §4.4), and who may hold which indicators.
//!
//! This module owns the entity [`registry`], the [`constituency`] index that maps the victim
//! side of a hit row to entities, and the TLP / MISP-distribution policy. It is pure: no
//! clock (callers pass `now`), no sockets, no files; the [`AuditLog`] writes to any
//! [`Write`]. Delivery belongs to the hub.
//!
//! Main types:
//! - [`Router`]: built once from a [`registry::Registry`] and a [`RoutePolicy`];
//!   [`Router::route`] turns one hit ([`RouteInput`]) into [`Decision`]s, allowed or blocked,
//!   each naming its [`Rule`]; [`Router::clearance`] is the cut of a compiled index that one
//!   entity may hold (`cwn compile --for`);
//! - [`route_batch`]: a whole matched telemetry batch to the partner's hits, the
//!   notifications, the audit lines and the sightings ([`Routed`]), for the hub to store;
//! - [`AuditLog`]: one JSON line per decision, the audit trail for the source;
//! - [`SightingsAggregator`]: what the publisher receives instead of telemetry — counts per
//!   indicator, partner and day.
//!
//! # The rules
//! The candidates for a hit are only the parties concerned, never a broadcast: the partner
//! that submitted the telemetry, and every entity whose constituency covers one of the row's
//! other observables (the *victims*). The submitting partner is also part of the *affected
//! party* when it is a victim itself or the registry lists a victim in its `on_behalf_of`.
//!
//! | effective TLP | submitting partner | victim | publisher's analysts |
//! |---|---|---|---|
//! | CLEAR | yes | yes | internal case if nobody else was reached |
//! | GREEN | yes | yes | internal case if nobody else was reached |
//! | AMBER | only if affected (victim or `on_behalf_of` a victim) | yes | internal case if nobody was reached |
//! | AMBER+STRICT | no | no | internal case ("request release from source") |
//! | RED, not armed (default) | no | no | no |
//! | RED, armed | only if named in the indicator's sharing group | same | internal case if the publisher is named |
//!
//! Who a partner's rows may notify at all comes first: its own estate, the entities it
//! streams for (`on_behalf_of`), entities that list it in `trusts`, and every entity when it
//! is a national sensor (`trusted_by_all`). Any other victim in its rows is blocked
//! ([`Rule::NotServed`]): otherwise a partner could make the hub send an entity TLP:AMBER
//! intelligence by streaming a made-up row with that entity's address.
//!
//! Then MISP distribution narrows further (the audiences intersect): 0 and 1 (and 5,
//! "inherit", when it reaches routing unresolved, and any unknown value) keep everything
//! inside — an internal case; 4 requires membership of the indicator's sharing group (no group
//! named ⇒ nobody); 2, 3 and none add nothing. A victim must be a `subscriber` (or a `partner`,
//! which has a connection too) and the submitter a `partner` to receive anything in that
//! capacity; a publisher-only victim is reached through the internal case.
//!
//! ```
//! use cwn::indicator::Tlp;
//! use cwn::route::{Router, RoutePolicy, RouteInput, Rule, Sensitivity};
//! use cwn::route::constituency::Observable;
//! use cwn::route::registry::Registry;
//!
//! let reg = Registry::from_toml(r#"
//! [[entities]]
//! id = "ncsc"
//! name = "NCSC"
//! roles = ["publisher"]
//!
//! [[entities]]
//! id = "msp"
//! name = "MSP"
//! roles = ["partner"]
//!
//! [[entities]]
//! id = "hospital"
//! name = "Hospital"
//! roles = ["subscriber"]
//! prefixes = ["198.51.100.0/24"]
//! trusts = ["msp"]
//! "#, "registry.toml").unwrap();
//! let router = Router::new(reg, RoutePolicy::default());
//! let reg = router.registry();
//! let victim_side = [Observable::Addr("198.51.100.20".parse().unwrap())];
//! let input = RouteInput {
//!     hit_id: 1,
//!     indicator_id: "c2-1",
//!     sensitivity: Sensitivity::new(Tlp::Amber),
//!     publisher: reg.by_id("ncsc"),
//!     partner: reg.by_id("msp").unwrap(),
//!     observables: &victim_side,
//! };
//! let mut out = Vec::new();
//! router.route(&input, &mut out);
//! // The MSP streams for nobody (no `on_behalf_of`), so it is no affected party: AMBER
//! // reaches only the hospital, which trusts the MSP's telemetry.
//! assert_eq!(out[0].recipient, reg.by_id("msp").unwrap());
//! assert_eq!((out[0].allowed, out[0].rule), (false, Rule::AmberNotAffected));
//! assert_eq!(out[1].recipient, reg.by_id("hospital").unwrap());
//! assert_eq!((out[1].allowed, out[1].rule), (true, Rule::AmberAffectedParty));
//! ```

pub mod batch;
pub mod constituency;
pub mod cut;
pub mod registry;

pub use batch::{BatchParties, MatchedBatch, Routed, RoutedNotification, route_batch};

use std::collections::HashMap;
use std::fmt;
use std::io::{self, Write};

use jiff::Timestamp;
use roaring::RoaringBitmap;
use serde::Serialize;

use crate::hits::SightingCounts;
use crate::hub::{EntityId, Notification, NotificationId, NotificationKind};
use crate::index::meta::Meta;
use crate::indicator::{Indicator, IndicatorId, Tlp};
use constituency::{ConstituencyIndex, Observable};
use registry::{EntityOrd, Registry, Role};

/// The handling rules of one indicator: its effective TLP (FORMATS.md §4.3) and MISP
/// distribution and sharing group (§1.8).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sensitivity<'a> {
    /// Effective TLP.
    pub tlp: Tlp,
    /// Effective MISP distribution 0–5, or `None` when the source has none (STIX, lists).
    pub distribution: Option<u8>,
    /// The MISP sharing group (uuid or name): the audience with distribution 4, the named
    /// recipients for TLP:RED.
    pub sharing_group: Option<&'a str>,
    /// `tlp:ex:chr`: the notification must not name the source.
    pub no_attribution: bool,
}

impl<'a> Sensitivity<'a> {
    /// A TLP label without distribution or sharing group.
    pub const fn new(tlp: Tlp) -> Self {
        Sensitivity {
            tlp,
            distribution: None,
            sharing_group: None,
            no_attribution: false,
        }
    }

    /// The rules of indicator `ord` of a compiled index.
    ///
    /// # Panics
    /// If `ord` is not an ordinal of `meta`.
    pub fn of_meta(meta: Meta<'a>, ord: IndicatorId) -> Self {
        Sensitivity {
            tlp: meta.tlp(ord),
            distribution: meta.distribution(ord),
            sharing_group: meta.sharing_group(ord),
            no_attribution: meta.no_attribution(ord),
        }
    }

    /// The rules of an indicator.
    pub fn of_indicator(ind: &'a Indicator) -> Self {
        Sensitivity {
            tlp: ind.tlp,
            distribution: ind.distribution,
            sharing_group: ind.sharing_group.as_deref(),
            no_attribution: ind.no_attribution,
        }
    }

    fn audience(&self) -> Audience {
        match self.distribution {
            None | Some(2) | Some(3) => Audience::Open,
            Some(4) => Audience::SharingGroup,
            // 0 and 1 by §1.8 [E]; 5 (inherit) unresolved and unknown values fail closed, as
            // MISP makes an event without a distribution 0.
            Some(_) => Audience::Internal,
        }
    }
}

/// What MISP distribution leaves of the audience.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Audience {
    Open,
    SharingGroup,
    Internal,
}

/// Settings of the policy that the registry does not hold.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RoutePolicy {
    /// Route TLP:RED hits to the named recipients (FORMATS.md §4.4: off by default, and a RED
    /// indicator is then not even compiled into shared matching).
    pub arm_red: bool,
}

/// One hit to route: the indicator's rules, who submitted the telemetry and the row's other
/// observables.
#[derive(Clone, Copy, Debug)]
pub struct RouteInput<'a> {
    /// Identifies the hit in the audit log (the hub's hit or notification sequence number).
    pub hit_id: u64,
    /// The indicator's id (MISP attribute uuid, STIX id).
    pub indicator_id: &'a str,
    /// The indicator's handling rules.
    pub sensitivity: Sensitivity<'a>,
    /// The publisher that owns the indicator (the one that pushed the snapshot in use); its
    /// analysts receive internal cases. `None`: nobody does, and an internal case due is only
    /// written to the audit log ([`Routing::unowned_internal_case`]) — never sent to anyone
    /// else in its place.
    pub publisher: Option<EntityOrd>,
    /// The partner whose telemetry batch matched.
    pub partner: EntityOrd,
    /// The other observables of the hit row — the victim side (the internal address that
    /// talked to the C2, the domain in a phishing URL). Leave out the matched value unless it
    /// too may name a victim.
    pub observables: &'a [Observable<'a>],
}

/// In which capacities an entity is a candidate recipient of a hit.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Capacities(u8);

impl Capacities {
    /// Submitted the telemetry that matched.
    pub const SUBMITTER: Capacities = Capacities(1);
    /// Owns an address or name on the victim side of the row.
    pub const VICTIM: Capacities = Capacities(2);
    /// Streams telemetry on behalf of a victim of this hit (registry `on_behalf_of`).
    pub const ON_BEHALF: Capacities = Capacities(4);
    /// The publisher's analysts, for an internal case.
    pub const INTERNAL: Capacities = Capacities(8);

    const NAMES: [(Capacities, &'static str); 4] = [
        (Self::SUBMITTER, "submitter"),
        (Self::VICTIM, "victim"),
        (Self::ON_BEHALF, "on_behalf"),
        (Self::INTERNAL, "internal"),
    ];

    /// No capacity.
    pub const fn empty() -> Self {
        Capacities(0)
    }

    /// Whether every capacity of `other` is in `self`.
    pub const fn contains(self, other: Capacities) -> bool {
        self.0 & other.0 == other.0
    }

    /// Whether any capacity of `other` is in `self`.
    pub const fn intersects(self, other: Capacities) -> bool {
        self.0 & other.0 != 0
    }

    /// Whether there is none.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The names of the capacities (`submitter`, `victim`, `on_behalf`, `internal`).
    pub fn names(self) -> impl Iterator<Item = &'static str> {
        Self::NAMES
            .into_iter()
            .filter(move |(c, _)| self.contains(*c))
            .map(|(_, n)| n)
    }
}

impl std::ops::BitOr for Capacities {
    type Output = Capacities;

    fn bitor(self, rhs: Self) -> Self {
        Capacities(self.0 | rhs.0)
    }
}

impl std::ops::BitOrAssign for Capacities {
    fn bitor_assign(&mut self, rhs: Self) {
        self.0 |= rhs.0;
    }
}

impl fmt::Debug for Capacities {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.names()).finish()
    }
}

/// The rule that allowed or blocked one disclosure.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    /// Allowed: TLP:CLEAR.
    Clear,
    /// Allowed: TLP:GREEN, the recipient is a network participant (the community).
    Green,
    /// Allowed: TLP:AMBER to the affected party.
    AmberAffectedParty,
    /// Blocked: TLP:AMBER, the recipient is not the affected party.
    AmberNotAffected,
    /// Blocked: TLP:AMBER+STRICT never leaves automatically.
    AmberStrict,
    /// Blocked: MISP distribution 0/1 (or unresolved 5, or unknown) keeps it inside.
    DistributionInternal,
    /// Blocked: MISP distribution 4 and the recipient is not in the sharing group.
    NotInSharingGroup,
    /// Blocked: TLP:RED is not armed.
    RedNotArmed,
    /// Allowed: TLP:RED, armed, and the recipient is named in the sharing group.
    RedNamedRecipient,
    /// Blocked: TLP:RED and the recipient is not named.
    RedNotNamed,
    /// Allowed: an internal case for the publisher's analysts.
    InternalCase,
    /// Blocked: a victim that is neither a `subscriber` nor a `partner`.
    NotSubscriber,
    /// Blocked: a submitter without the `partner` role.
    NotPartner,
    /// Blocked: the reporting partner does not serve the victim (no `on_behalf_of`, not
    /// trusted by it, no national sensor).
    NotServed,
}

impl Rule {
    /// The name in the audit log.
    pub const fn name(self) -> &'static str {
        match self {
            Rule::Clear => "clear",
            Rule::Green => "green",
            Rule::AmberAffectedParty => "amber_affected_party",
            Rule::AmberNotAffected => "amber_not_affected",
            Rule::AmberStrict => "amber_strict",
            Rule::DistributionInternal => "distribution_internal",
            Rule::NotInSharingGroup => "not_in_sharing_group",
            Rule::RedNotArmed => "red_not_armed",
            Rule::RedNamedRecipient => "red_named_recipient",
            Rule::RedNotNamed => "red_not_named",
            Rule::InternalCase => "internal_case",
            Rule::NotSubscriber => "not_subscriber",
            Rule::NotPartner => "not_partner",
            Rule::NotServed => "partner_does_not_serve",
        }
    }

    /// Whether the rule allows the disclosure.
    pub const fn allows(self) -> bool {
        matches!(
            self,
            Rule::Clear
                | Rule::Green
                | Rule::AmberAffectedParty
                | Rule::RedNamedRecipient
                | Rule::InternalCase
        )
    }

    /// The rule in words, for the audit log and the recipient's handling note.
    pub const fn reason(self) -> &'static str {
        match self {
            Rule::Clear => "TLP:CLEAR: no disclosure limit",
            Rule::Green => "TLP:GREEN: network participants, closed channels only",
            Rule::AmberAffectedParty => {
                "TLP:AMBER: the affected party (victim or the partner streaming on its behalf)"
            }
            Rule::AmberNotAffected => "TLP:AMBER: only the affected party may be notified",
            Rule::AmberStrict => "TLP:AMBER+STRICT: no automatic notification, internal case only",
            Rule::DistributionInternal => {
                "MISP distribution 0/1 (or unresolved): the data must not leave the organisation"
            }
            Rule::NotInSharingGroup => {
                "MISP distribution 4: the recipient is not a member of the sharing group"
            }
            Rule::RedNotArmed => "TLP:RED is not armed",
            Rule::RedNamedRecipient => "TLP:RED: the recipient is named in the sharing group",
            Rule::RedNotNamed => "TLP:RED: only named recipients",
            Rule::InternalCase => {
                "internal case for the publisher's analysts; request release from the source before sharing"
            }
            Rule::NotSubscriber => "the entity is not a subscriber",
            Rule::NotPartner => "the submitting entity is not a partner",
            Rule::NotServed => {
                "the reporting partner neither streams on this entity's behalf nor is trusted by it"
            }
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Whether one entity may learn of one hit, and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    /// The entity.
    pub recipient: EntityOrd,
    /// Why it is a candidate.
    pub capacity: Capacities,
    /// Whether the hit may be sent to it.
    pub allowed: bool,
    /// The rule that decided.
    pub rule: Rule,
    /// The rule in words.
    pub reason: &'static str,
}

impl Decision {
    fn new(recipient: EntityOrd, capacity: Capacities, rule: Rule) -> Self {
        Decision {
            recipient,
            capacity,
            allowed: rule.allows(),
            rule,
            reason: rule.reason(),
        }
    }
}

/// What [`Router::route`] found beside its decisions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[must_use]
pub struct Routing {
    /// An internal case was due (the hit reached nobody, or its rules keep it inside) but the
    /// indicator has no publisher to receive it: the case exists only in the audit log.
    pub unowned_internal_case: bool,
}

/// The routing policy over one registry. Immutable, `Send + Sync`.
#[derive(Clone, Debug)]
pub struct Router {
    registry: Registry,
    constituency: ConstituencyIndex,
    /// Sharing group (ASCII lower case) → member entities.
    groups: HashMap<String, RoaringBitmap>,
    policy: RoutePolicy,
    /// The durable number of each entity, by ordinal; empty: the ordinal itself.
    numbers: Vec<EntityId>,
}

impl Router {
    /// The router of `registry`: builds its constituency index and sharing-group bitmaps.
    pub fn new(registry: Registry, policy: RoutePolicy) -> Self {
        let constituency = ConstituencyIndex::build(&registry);
        let mut groups: HashMap<String, RoaringBitmap> = HashMap::new();
        for (ord, e) in registry.iter() {
            for g in &e.sharing_groups {
                groups
                    .entry(g.to_ascii_lowercase())
                    .or_default()
                    .insert(ord.as_u32());
            }
        }
        Router {
            registry,
            constituency,
            groups,
            policy,
            numbers: Vec::new(),
        }
    }

    /// The router with each entity's durable number (by ordinal), as the hub's store keeps it
    /// ([`crate::hub::Hub::number_entities`]): notifications are addressed by number, which
    /// stays with its entity when the registry's order changes.
    ///
    /// # Panics
    /// If `numbers` does not have one number per registry entity.
    pub fn with_numbers(mut self, numbers: Vec<EntityId>) -> Self {
        assert_eq!(numbers.len(), self.registry.len(), "one number per entity");
        self.numbers = numbers;
        self
    }

    /// The durable number of the entity at `ord` (its ordinal when none were given).
    pub fn number(&self, ord: EntityOrd) -> EntityId {
        self.numbers
            .get(ord.as_usize())
            .copied()
            .unwrap_or(EntityId(ord.as_u32()))
    }

    /// The registry.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The constituency index.
    pub fn constituency(&self) -> &ConstituencyIndex {
        &self.constituency
    }

    /// The policy.
    pub fn policy(&self) -> RoutePolicy {
        self.policy
    }

    /// The members of sharing group `group` (uuid or name, ASCII case ignored).
    pub fn sharing_group_members(&self, group: &str) -> Option<&RoaringBitmap> {
        let g = group.trim();
        if g.bytes().any(|b| b.is_ascii_uppercase()) {
            self.groups.get(&g.to_ascii_lowercase())
        } else {
            self.groups.get(g)
        }
    }

    fn in_group(&self, group: Option<&str>, ord: EntityOrd) -> bool {
        group
            .and_then(|g| self.sharing_group_members(g))
            .is_some_and(|m| m.contains(ord.as_u32()))
    }

    /// Appends to `victims` the entities whose constituency covers one of `observables`.
    pub fn victims(&self, observables: &[Observable<'_>], victims: &mut RoaringBitmap) {
        self.constituency.victims(observables, victims);
    }

    /// Decides who may learn of one hit: one [`Decision`] per candidate — the submitting
    /// partner first, then the victims in ordinal order (an entity that is both appears once,
    /// with both capacities), then an internal case for the publisher where the rules ask for
    /// one (see the module docs). Appends to `out`.
    ///
    /// # Panics
    /// If `input.partner` or `input.publisher` is not an ordinal of this registry.
    pub fn route(&self, input: &RouteInput<'_>, out: &mut Vec<Decision>) -> Routing {
        let mut victims = RoaringBitmap::new();
        self.victims(input.observables, &mut victims);
        self.route_victims(input, &victims, out)
    }

    /// [`route`](Self::route) with the victims already known (the hub may cache them per row).
    ///
    /// # Panics
    /// If `input.partner` or `input.publisher` is not an ordinal of this registry.
    pub fn route_victims(
        &self,
        input: &RouteInput<'_>,
        victims: &RoaringBitmap,
        out: &mut Vec<Decision>,
    ) -> Routing {
        let first = out.len();
        let partner = self.registry.entity(input.partner);
        let mut partner_caps = Capacities::SUBMITTER;
        if victims.contains(input.partner.as_u32()) {
            partner_caps |= Capacities::VICTIM;
        }
        if partner
            .on_behalf_of
            .iter()
            .any(|o| victims.contains(o.as_u32()))
        {
            partner_caps |= Capacities::ON_BEHALF;
        }
        out.push(self.decide(input, input.partner, partner_caps));
        for v in victims.iter() {
            if v == input.partner.as_u32() {
                continue;
            }
            let v = EntityOrd::new(v);
            if self.serves(input.partner, v) {
                out.push(self.decide(input, v, Capacities::VICTIM));
            } else {
                out.push(Decision::new(v, Capacities::VICTIM, Rule::NotServed));
            }
        }
        let s = &input.sensitivity;
        let reached = out[first..].iter().any(|d| d.allowed);
        let Some(publisher) = input.publisher else {
            // Nobody to hand an internal case to: it is written to the audit log only, never
            // sent to another party instead.
            let due = match s.tlp {
                Tlp::Red => false,
                _ => !reached,
            };
            return Routing {
                unowned_internal_case: due,
            };
        };
        let internal_case = match s.tlp {
            Tlp::Red => self.policy.arm_red && self.in_group(s.sharing_group, publisher),
            _ => !reached,
        };
        let publisher_reached = out[first..]
            .iter()
            .any(|d| d.allowed && d.recipient == publisher);
        if internal_case && !publisher_reached {
            out.push(Decision::new(
                publisher,
                Capacities::INTERNAL,
                Rule::InternalCase,
            ));
        }
        Routing::default()
    }

    /// Whether `partner`'s telemetry may notify `victim`: it streams on the victim's behalf,
    /// the victim trusts it, or it is a sensor every entity trusts (`trusted_by_all`).
    ///
    /// # Panics
    /// If either is not an ordinal of this registry.
    pub fn serves(&self, partner: EntityOrd, victim: EntityOrd) -> bool {
        let p = self.registry.entity(partner);
        partner == victim
            || p.trusted_by_all
            || p.on_behalf_of.contains(&victim)
            || self.registry.entity(victim).trusts.contains(&partner)
    }

    /// The decision for one candidate.
    fn decide(&self, input: &RouteInput<'_>, ord: EntityOrd, mut caps: Capacities) -> Decision {
        let e = self.registry.entity(ord);
        let given = caps;
        let s = &input.sensitivity;
        // A capacity counts only with the role that goes with it.
        if !e.roles.contains(Role::Partner) {
            caps = Capacities(caps.0 & !(Capacities::SUBMITTER.0 | Capacities::ON_BEHALF.0));
        }
        if !e.roles.contains(Role::Subscriber) && !e.roles.contains(Role::Partner) {
            caps = Capacities(caps.0 & !Capacities::VICTIM.0);
        }
        if caps.is_empty() {
            let rule = if given.contains(Capacities::SUBMITTER) {
                Rule::NotPartner
            } else {
                Rule::NotSubscriber
            };
            return Decision::new(ord, given, rule);
        }
        let tlp_rule = match s.tlp {
            Tlp::Clear => Rule::Clear,
            Tlp::Green => Rule::Green,
            Tlp::Amber => {
                if caps.intersects(Capacities::VICTIM | Capacities::ON_BEHALF) {
                    Rule::AmberAffectedParty
                } else {
                    Rule::AmberNotAffected
                }
            }
            Tlp::AmberStrict => Rule::AmberStrict,
            Tlp::Red if !self.policy.arm_red => Rule::RedNotArmed,
            Tlp::Red => {
                if self.in_group(s.sharing_group, ord) {
                    Rule::RedNamedRecipient
                } else {
                    Rule::RedNotNamed
                }
            }
        };
        if !tlp_rule.allows() {
            return Decision::new(ord, caps, tlp_rule);
        }
        let rule = match s.audience() {
            Audience::Open => tlp_rule,
            Audience::Internal => Rule::DistributionInternal,
            Audience::SharingGroup if self.in_group(s.sharing_group, ord) => tlp_rule,
            Audience::SharingGroup => Rule::NotInSharingGroup,
        };
        Decision::new(ord, caps, rule)
    }

    /// Whether `entity` may hold an indicator with these rules in a pushed snapshot (to match
    /// locally), with no hit and so no affected party yet:
    ///
    /// - CLEAR, GREEN: every entity (GREEN's community is the network);
    /// - AMBER: the operator (a `publisher`), and entities the source named by putting them in
    ///   the indicator's sharing group — pushing AMBER to everyone would be a broadcast, not
    ///   need-to-know; partners without that clearance stream their telemetry to the hub;
    /// - AMBER+STRICT: the operator only;
    /// - RED: when armed, entities named in the sharing group (the operator too only if named);
    ///   never when not armed.
    ///
    /// Distribution then intersects: 0/1/unresolved 5 ⇒ the operator only; 4 ⇒ sharing-group
    /// members (the operator, which imported the data, is exempt).
    ///
    /// # Panics
    /// If `entity` is not an ordinal of this registry.
    pub fn may_hold(&self, entity: EntityOrd, s: &Sensitivity<'_>) -> bool {
        let operator = self.registry.entity(entity).roles.contains(Role::Publisher);
        let named = self.in_group(s.sharing_group, entity);
        let tlp_ok = match s.tlp {
            Tlp::Clear | Tlp::Green => true,
            Tlp::Amber => operator || named,
            Tlp::AmberStrict => operator,
            Tlp::Red => self.policy.arm_red && named,
        };
        tlp_ok
            && match s.audience() {
                Audience::Open => true,
                Audience::SharingGroup => operator || named,
                Audience::Internal => operator,
            }
    }

    /// The ordinals of the indicators of `meta` that `entity` may hold ([`may_hold`]): the cut
    /// for `cwn compile --for ENTITY`.
    ///
    /// [`may_hold`]: Self::may_hold
    ///
    /// # Panics
    /// If `entity` is not an ordinal of this registry.
    pub fn clearance(&self, entity: EntityOrd, meta: Meta<'_>) -> RoaringBitmap {
        let mut out = RoaringBitmap::new();
        for ord in meta.ords() {
            if self.may_hold(entity, &Sensitivity::of_meta(meta, ord)) {
                out.insert(ord.as_u32());
            }
        }
        out
    }
}

/// One line of the audit log.
#[derive(Serialize)]
struct AuditRecord<'a> {
    ts: String,
    hit: u64,
    indicator: &'a str,
    tlp: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    distribution: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sharing_group: Option<&'a str>,
    /// `None`: an internal case with no publisher to receive it.
    entity: Option<&'a str>,
    capacity: Vec<&'static str>,
    allowed: bool,
    rule: &'static str,
    reason: &'static str,
}

/// The disclosure audit trail (FORMATS.md §4.4): one JSON line per [`Decision`], allowed or
/// blocked, with the time, hit, indicator, its labels, the entity and the rule.
#[derive(Debug)]
pub struct AuditLog<W: Write> {
    w: W,
    records: u64,
}

impl<W: Write> AuditLog<W> {
    /// A log writing to `w`.
    pub fn new(w: W) -> Self {
        AuditLog { w, records: 0 }
    }

    /// Writes the decisions of one hit, stamped `now`.
    ///
    /// # Errors
    /// The writer's.
    ///
    /// # Panics
    /// If a decision names an entity that is not in `registry`.
    pub fn write(
        &mut self,
        now: Timestamp,
        registry: &Registry,
        input: &RouteInput<'_>,
        decisions: &[Decision],
        routing: Routing,
    ) -> io::Result<()> {
        let ts = now.to_string();
        let record = |entity, capacity, allowed, rule, reason| AuditRecord {
            ts: ts.clone(),
            hit: input.hit_id,
            indicator: input.indicator_id,
            tlp: input.sensitivity.tlp.name(),
            distribution: input.sensitivity.distribution,
            sharing_group: input.sensitivity.sharing_group,
            entity,
            capacity,
            allowed,
            rule,
            reason,
        };
        for d in decisions {
            let rec = record(
                Some(&registry.entity(d.recipient).id),
                d.capacity.names().collect(),
                d.allowed,
                d.rule.name(),
                d.reason,
            );
            serde_json::to_writer(&mut self.w, &rec)?;
            self.w.write_all(b"\n")?;
            self.records += 1;
        }
        if routing.unowned_internal_case {
            let rec = record(
                None,
                vec!["internal"],
                false,
                "internal_case_no_publisher",
                "internal case, but no publisher owns the indicator: recorded here only",
            );
            serde_json::to_writer(&mut self.w, &rec)?;
            self.w.write_all(b"\n")?;
            self.records += 1;
        }
        Ok(())
    }

    /// Number of records written.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// Flushes the writer.
    ///
    /// # Errors
    /// The writer's.
    pub fn flush(&mut self) -> io::Result<()> {
        self.w.flush()
    }

    /// The writer.
    pub fn into_inner(self) -> W {
        self.w
    }
}

/// How many distinct indicators each partner may learn of through its own telemetry per UTC
/// day. A partner that streams every IPv4 address beside its own would otherwise learn the
/// whole AMBER address set in minutes (an oracle); past the quota its further hits are
/// withheld from it (victims are still notified) and audited.
#[derive(Debug, Clone)]
pub struct DailyQuota {
    limit: usize,
    day: i64,
    seen: HashMap<EntityOrd, std::collections::HashSet<u64>>,
    exceeded: std::collections::HashSet<EntityOrd>,
}

/// What [`DailyQuota::admit`] decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// Within the quota.
    Admitted,
    /// Over it; the first refusal of the day for this partner.
    FirstRefusal,
    /// Over it, again.
    Refused,
}

impl DailyQuota {
    /// A quota of `limit` distinct indicators per partner and day.
    pub fn new(limit: usize) -> Self {
        DailyQuota {
            limit,
            day: i64::MIN,
            seen: HashMap::new(),
            exceeded: Default::default(),
        }
    }

    /// Whether `partner` may see a hit of `indicator_id` at `now` (Unix seconds): always for
    /// an indicator it has seen today, else while it has seen fewer than the limit.
    pub fn admit(&mut self, partner: EntityOrd, indicator_id: &str, now: i64) -> Admission {
        let day = now.div_euclid(SECONDS_PER_DAY);
        if day != self.day {
            self.day = day;
            self.seen.clear();
            self.exceeded.clear();
        }
        let key = xxhash_rust::xxh3::xxh3_64(indicator_id.as_bytes());
        let seen = self.seen.entry(partner).or_default();
        if seen.contains(&key) {
            return Admission::Admitted;
        }
        if seen.len() < self.limit {
            seen.insert(key);
            return Admission::Admitted;
        }
        if self.exceeded.insert(partner) {
            Admission::FirstRefusal
        } else {
            Admission::Refused
        }
    }

    /// The hits of one batch that `partner` (registry id `partner_id`) may see under the
    /// quota, and an audit line (`partner_daily_limit`) for each one withheld; `true` when
    /// this batch made the first refusal of the day (for the operator's warning).
    pub fn filter(
        &mut self,
        partner: EntityOrd,
        partner_id: &str,
        hits: Vec<crate::hits::HitLine>,
        now: jiff::Timestamp,
    ) -> QuotaOutcome {
        let mut out = QuotaOutcome::default();
        for h in hits {
            match self.admit(partner, &h.indicator_id, now.as_second()) {
                Admission::Admitted => {
                    out.admitted.push(h);
                    continue;
                }
                Admission::FirstRefusal => out.first_refusal = true,
                Admission::Refused => {}
            }
            let rec = serde_json::json!({
                "ts": now.to_string(),
                "indicator": h.indicator_id,
                "tlp": h.tlp,
                "entity": partner_id,
                "capacity": ["submitter"],
                "allowed": false,
                "rule": "partner_daily_limit",
                "reason": "the partner has learnt of its daily quota of distinct indicators through its telemetry; further hits are withheld from it until the next UTC day",
            });
            out.audit.extend_from_slice(rec.to_string().as_bytes());
            out.audit.push(b'\n');
        }
        out
    }
}

/// What [`DailyQuota::filter`] let through and withheld.
#[derive(Debug, Default)]
pub struct QuotaOutcome {
    /// The hits the partner may see.
    pub admitted: Vec<crate::hits::HitLine>,
    /// Audit log lines (JSON lines) of the hits withheld.
    pub audit: Vec<u8>,
    /// Whether the first refusal of the day for this partner fell in this batch.
    pub first_refusal: bool,
}

/// Aggregated sightings for one indicator, partner and day.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Sighting {
    /// The indicator's id.
    pub indicator_id: String,
    /// The partner whose telemetry matched.
    pub partner: EntityOrd,
    /// The UTC day of the events.
    pub day: jiff::civil::Date,
    /// Number of hits.
    pub count: u64,
}

/// What the publisher receives back instead of telemetry rows: hit counts per indicator per
/// partner per UTC day ([`SightingCounts`]). Keyed by indicator id, not ordinal, so counts
/// survive a snapshot swap.
#[derive(Clone, Debug, Default)]
pub struct SightingsAggregator {
    counts: SightingCounts<String, EntityOrd>,
}

const SECONDS_PER_DAY: i64 = 86_400;

impl SightingsAggregator {
    /// An empty aggregator.
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts one hit of `indicator_id` in `partner`'s telemetry at `event_time` (Unix seconds;
    /// the match time when the row has none).
    pub fn add(&mut self, indicator_id: &str, partner: EntityOrd, event_time: i64) {
        self.counts.add(indicator_id, partner, event_time);
    }

    /// Adds `count` hits of `indicator_id` by `partner` on `day` (a row of
    /// [`sightings`](Self::sightings) given back).
    pub fn add_count(
        &mut self,
        indicator_id: &str,
        partner: EntityOrd,
        day: jiff::civil::Date,
        count: u64,
    ) {
        let day = day
            .to_zoned(jiff::tz::TimeZone::UTC)
            .map_or(0, |z| z.timestamp().as_second().div_euclid(SECONDS_PER_DAY));
        self.counts.add_on_day(indicator_id, partner, day, count);
    }

    /// Adds every count of `other`.
    pub fn merge(&mut self, other: &SightingsAggregator) {
        self.counts.merge(&other.counts);
    }

    /// Number of (indicator, partner, day) rows.
    pub fn len(&self) -> usize {
        self.counts.len()
    }

    /// Whether nothing was counted.
    pub fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }

    /// The rows, by indicator id, partner and day.
    pub fn sightings(&self) -> impl Iterator<Item = Sighting> + '_ {
        self.counts
            .rows()
            .map(|(id, partner, day, count)| Sighting {
                indicator_id: id.clone(),
                partner,
                day: day_date(day),
                count,
            })
    }

    /// The rows, leaving the aggregator empty (for a periodic push to the publisher).
    pub fn take(&mut self) -> Vec<Sighting> {
        let out = self.sightings().collect();
        self.counts.clear();
        out
    }

    /// Writes one JSON line per row: `indicator_id`, `partner` (the entity id), `day`,
    /// `count`.
    ///
    /// # Errors
    /// The writer's.
    ///
    /// # Panics
    /// If a partner is not in `registry`.
    pub fn write_jsonl(&self, w: &mut dyn Write, registry: &Registry) -> io::Result<()> {
        for s in self.sightings() {
            serde_json::to_writer(&mut *w, &s.to_json(registry))?;
            w.write_all(b"\n")?;
        }
        Ok(())
    }
}

impl Sighting {
    /// The row as JSON: `indicator_id`, `partner` (the entity id), `day`, `count`.
    ///
    /// # Panics
    /// If the partner is not in `registry`.
    pub fn to_json(&self, registry: &Registry) -> serde_json::Value {
        serde_json::json!({
            "indicator_id": self.indicator_id,
            "partner": registry.entity(self.partner).id,
            "day": self.day.to_string(),
            "count": self.count,
        })
    }
}

/// The body of the `sighting` notification the publisher receives: `{"sightings": [rows]}`.
///
/// # Panics
/// If a partner is not in `registry`.
pub fn sightings_payload(rows: &[Sighting], registry: &Registry) -> Vec<u8> {
    let rows: Vec<serde_json::Value> = rows.iter().map(|s| s.to_json(registry)).collect();
    // Serialising JSON values into a Vec cannot fail.
    serde_json::to_vec(&serde_json::json!({ "sightings": rows })).unwrap_or_default()
}

/// The `sighting` notification for `publisher` with the counts in `rows`, at `now_ms`. Its id
/// is a digest of the payload and the time.
pub fn sightings_notification(
    rows: &[Sighting],
    router: &Router,
    publisher: EntityOrd,
    now_ms: u64,
) -> Notification {
    let payload = sightings_payload(rows, router.registry());
    let mut key = payload.clone();
    key.extend_from_slice(&now_ms.to_le_bytes());
    Notification {
        id: NotificationId(batch::batch_digest(&key)),
        created_at_ms: now_ms,
        entity: router.number(publisher),
        // Counts of indicators of every TLP: as restrictive as the most restrictive.
        tlp: Tlp::AmberStrict,
        kind: NotificationKind::Sighting,
        payload,
    }
}

fn day_date(day: i64) -> jiff::civil::Date {
    Timestamp::from_second(day.saturating_mul(SECONDS_PER_DAY))
        .unwrap_or(Timestamp::UNIX_EPOCH)
        .to_zoned(jiff::tz::TimeZone::UTC)
        .date()
}

#[cfg(test)]
mod tests;
