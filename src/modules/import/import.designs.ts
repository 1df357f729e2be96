import type { ShapeName } from './import.js';

/**
 * Every seed design `tally import` knows, built or not: the tables that must all be present for a
 * source to be it (`signature`), and all the tables of the design (`tables`), which settle a source
 * that carries the signature of more than one (docs/import.md, "Detection").
 */
export interface Design {
  name: ShapeName;
  seed: string;
  signature: readonly string[];
  tables: readonly string[];
}

export const DESIGNS: readonly Design[] = [
  {
    name: 'app-builder',
    seed: '000',
    signature: ['users', 'point_transactions', 'allowances', 'rollover_buckets', 'consumption_events'],
    tables: [
      'users', 'user_providers', 'service_tokens', 'projects', 'sessions', 'messages', 'tools_usage', 'user_requests', 'env_vars', 'project_service_connections',
      'commits', 'point_transactions', 'payments', 'plans', 'allowances', 'rollover_buckets', 'user_subscriptions', 'consumption_events', 'usage_meter_readings',
      'usage_summaries', 'overage_charges', 'budget_guards', 'allowance_daily_autofix', 'cost_models',
    ],
  },
  {
    name: 'video-credits',
    seed: '001',
    signature: ['users', 'credit_transactions', 'video_jobs'],
    tables: ['users', 'credit_transactions', 'video_jobs', 'payments', 'user_subscriptions', 'api_keys', 'usage_stats'],
  },
  {
    name: 'cloud-ide',
    seed: '002',
    signature: ['users', 'workspaces', 'workspace_members', 'subscription_plans', 'subscriptions', 'usage_records'],
    tables: [
      'users', 'workspaces', 'workspace_members', 'projects', 'conversations', 'messages', 'oauth_connections', 'user_sessions_extended', 'subscription_plans',
      'customers', 'subscriptions', 'usage_records', 'invoices', 'ai_jobs', 'code_analyses', 'files', 'file_versions', 'editor_sessions', 'terminal_sessions',
      'git_repositories', 'background_jobs', 'code_executions', 'api_logs', 'error_logs', 'analytics_events', 'performance_metrics', 'api_integrations',
      'webhook_logs', 'deployments', 'environment_variables',
    ],
  },
  {
    name: 'foundation',
    seed: '003',
    signature: ['users', 'subscriptions', 'usage_counters'],
    tables: ['users', 'subscriptions', 'usage_counters'],
  },
  {
    name: 'llm-relay',
    seed: '004',
    signature: ['users', 'api_keys', 'upstream_accounts', 'usage_records'],
    tables: ['users', 'api_keys', 'upstream_accounts', 'usage_records'],
  },
];
