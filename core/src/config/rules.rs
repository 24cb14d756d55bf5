//! `Settings` as the model's `Rules`: what validation of entities asks of the installation.

use super::Settings;
use crate::model::{CustomFieldDef, EntityKind, List, ListId, Rules};

impl Rules for Settings {
    fn list(&self, list: ListId) -> &List {
        match list {
            ListId::LossReasons => &self.lists.loss_reasons,
            ListId::Sources => &self.lists.sources,
            ListId::ParticipantRoles => &self.lists.participant_roles,
            ListId::DecisionRoles => &self.lists.decision_roles,
            ListId::PartnerLinkTypes => &self.partner_link_types,
            ListId::ContactLinkTypes => &self.contact_link_types,
            ListId::ParticipantLinkTypes => &self.participant_link_types,
        }
    }

    fn custom_fields_of(&self, kind: EntityKind) -> &[CustomFieldDef] {
        Settings::custom_fields_of(self, kind)
    }

    fn phone_region(&self) -> &str {
        &self.phone_region
    }

    fn process_kinds(&self) -> Vec<&str> {
        self.process_kinds.iter().map(|p| p.id.as_str()).collect()
    }

    fn stages_of(&self, kind: &str) -> Option<Vec<&str>> {
        self.process_kind(kind).map(|k| k.stages.iter().map(|s| s.id.as_str()).collect())
    }

    fn creation_step(
        &self,
        deal: &mut crate::model::Deal,
        actor: Option<crate::id::UserId>,
    ) -> Result<crate::model::StageChange, crate::model::FieldError> {
        crate::process::creation_step(self.process_kind(&deal.kind), deal, actor)
    }

    fn claim_types(&self) -> &[crate::model::ClaimType] {
        &self.claim_types
    }
}
