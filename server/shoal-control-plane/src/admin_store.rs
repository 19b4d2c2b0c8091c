//! The console's contract ([`AdminStore`]) on the PostgreSQL store: each call is the store's
//! own, with its error reduced to what the console acts on.

use std::time::Duration;

use async_trait::async_trait;
use shoal_model::{
    AdminIdentity, AdminStore, AdminSummary, AuditPage, AuditQuery, DocumentRecord, ModelError,
    NewCredential, Policy, Resource, ResourceSpec, RevisionRecord, Session, UserSummary,
};

use crate::Store;

#[async_trait]
impl AdminStore for Store {
    async fn login(
        &self,
        username: &str,
        password: &str,
        ttl: Duration,
    ) -> Result<Option<Session>, ModelError> {
        Ok(Store::login(self, username, password, ttl).await?)
    }

    async fn session(&self, token: &str) -> Result<Option<AdminIdentity>, ModelError> {
        Ok(Store::session(self, token).await?)
    }

    async fn logout(&self, token: &str) -> Result<(), ModelError> {
        Ok(Store::logout(self, token).await?)
    }

    async fn audit(
        &self,
        actor: &str,
        action: &str,
        target: &str,
        outcome: &str,
        detail: serde_json::Value,
    ) -> Result<(), ModelError> {
        Ok(Store::audit(self, actor, action, target, outcome, detail).await?)
    }

    async fn list_revisions(&self, limit: i64) -> Result<Vec<RevisionRecord>, ModelError> {
        Ok(Store::list_revisions(self, limit).await?)
    }

    async fn list_audit(&self, query: &AuditQuery) -> Result<AuditPage, ModelError> {
        Ok(Store::list_audit(self, query).await?)
    }

    async fn list_policies(&self) -> Result<Vec<Policy>, ModelError> {
        Ok(Store::list_policies(self).await?)
    }

    async fn put_policy(&self, actor: &str, policy: &Policy) -> Result<i64, ModelError> {
        Ok(Store::put_policy(self, actor, policy).await?)
    }

    async fn set_policy_enabled(
        &self,
        actor: &str,
        name: &str,
        enabled: bool,
    ) -> Result<i64, ModelError> {
        Ok(Store::set_policy_enabled(self, actor, name, enabled).await?)
    }

    async fn delete_policy(&self, actor: &str, name: &str) -> Result<i64, ModelError> {
        Ok(Store::delete_policy(self, actor, name).await?)
    }

    async fn list_documents(&self) -> Result<Vec<DocumentRecord>, ModelError> {
        Ok(Store::list_documents(self).await?)
    }

    async fn put_document(
        &self,
        actor: &str,
        document: &shoal_model::DataDocument,
    ) -> Result<i64, ModelError> {
        Ok(Store::put_document(self, actor, document).await?)
    }

    async fn delete_document(&self, actor: &str, name: &str) -> Result<i64, ModelError> {
        Ok(Store::delete_document(self, actor, name).await?)
    }

    async fn list_resources(&self) -> Result<Vec<Resource>, ModelError> {
        Ok(Store::list_resources(self).await?)
    }

    fn resource_spec(
        &self,
        kind: &str,
        spec: serde_json::Value,
    ) -> Result<ResourceSpec, ModelError> {
        Ok(Store::resource_spec(self, kind, spec)?)
    }

    async fn put_resource(&self, actor: &str, resource: &Resource) -> Result<i64, ModelError> {
        Ok(Store::put_resource(self, actor, resource).await?)
    }

    async fn delete_resource(&self, actor: &str, name: &str) -> Result<i64, ModelError> {
        Ok(Store::delete_resource(self, actor, name).await?)
    }

    async fn list_users(&self) -> Result<Vec<UserSummary>, ModelError> {
        Ok(Store::list_users(self).await?)
    }

    async fn put_user(
        &self,
        actor: &str,
        name: &str,
        enabled: bool,
        description: &str,
        profile: &shoal_model::UserProfile,
    ) -> Result<i64, ModelError> {
        Ok(Store::put_user(self, actor, name, enabled, description, profile).await?)
    }

    async fn set_user_enabled(
        &self,
        actor: &str,
        name: &str,
        enabled: bool,
    ) -> Result<i64, ModelError> {
        Ok(Store::set_user_enabled(self, actor, name, enabled).await?)
    }

    async fn delete_user(&self, actor: &str, name: &str) -> Result<i64, ModelError> {
        Ok(Store::delete_user(self, actor, name).await?)
    }

    async fn create_credential(
        &self,
        actor: &str,
        user: &str,
        kind: &str,
    ) -> Result<NewCredential, ModelError> {
        Ok(Store::create_credential(self, actor, user, kind).await?)
    }

    async fn rotate_credential(
        &self,
        actor: &str,
        key_id: &str,
    ) -> Result<NewCredential, ModelError> {
        Ok(Store::rotate_credential(self, actor, key_id).await?)
    }

    async fn delete_credential(&self, actor: &str, key_id: &str) -> Result<i64, ModelError> {
        Ok(Store::delete_credential(self, actor, key_id).await?)
    }

    async fn list_admins(&self) -> Result<Vec<AdminSummary>, ModelError> {
        Ok(Store::list_admins(self).await?)
    }

    async fn create_admin(
        &self,
        actor: &str,
        username: &str,
        password: &str,
    ) -> Result<(), ModelError> {
        Ok(Store::create_admin(self, actor, username, password).await?)
    }

    async fn set_admin_disabled(
        &self,
        actor: &str,
        username: &str,
        disabled: bool,
    ) -> Result<(), ModelError> {
        Ok(Store::set_admin_disabled(self, actor, username, disabled).await?)
    }
}
