-- Version 10: plans, subscriptions and invoices (the SaaS lineage of the Whaticket family: its Plans and
-- Companies screens, the menu that shows features from the plan, its Financeiro screen, its signup page).
--
-- A plan caps a company's users, connections and queues (0: no limit) and switches features on or off;
-- the server enforces both. One plan is the default (`is_default`): every company without a plan gets it,
-- and the one this migration creates is unlimited with every feature on, so an installation that never
-- touches plans behaves as before. `is_public` plans are offered by the public signup.

CREATE TABLE plans (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name              text NOT NULL CHECK (length(name) BETWEEN 1 AND 255),
    users             integer NOT NULL DEFAULT 0 CHECK (users >= 0),
    connections       integer NOT NULL DEFAULT 0 CHECK (connections >= 0),
    queues            integer NOT NULL DEFAULT 0 CHECK (queues >= 0),
    value             numeric(12, 2) NOT NULL DEFAULT 0 CHECK (value >= 0),
    recurrence        text NOT NULL DEFAULT 'MENSAL'
                      CHECK (recurrence IN ('MENSAL', 'BIMESTRAL', 'TRIMESTRAL', 'SEMESTRAL', 'ANUAL')),
    is_public         boolean NOT NULL DEFAULT false,
    is_default        boolean NOT NULL DEFAULT false,
    use_campaigns     boolean NOT NULL DEFAULT true,
    use_schedules     boolean NOT NULL DEFAULT true,
    use_internal_chat boolean NOT NULL DEFAULT true,
    use_external_api  boolean NOT NULL DEFAULT true,
    use_kanban        boolean NOT NULL DEFAULT true,
    use_open_ai       boolean NOT NULL DEFAULT true,
    use_integrations  boolean NOT NULL DEFAULT true,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX plans_name_key ON plans (lower(name));
CREATE UNIQUE INDEX plans_default_key ON plans (is_default) WHERE is_default;

INSERT INTO plans (name, is_default) VALUES ('Unlimited', true);

-- The default plan's id: the default of companies.plan_id, so that every way of creating a company (the API,
-- the command line, a script's INSERT) gives it a plan.
CREATE FUNCTION default_plan_id() RETURNS bigint
LANGUAGE sql STABLE AS $$
    SELECT id FROM plans WHERE is_default
$$;

-- A company's plan, and how often it pays (the lineage's values: MENSAL, BIMESTRAL, ...). A plan in use
-- cannot be deleted (RESTRICT): its companies would lose their limits.
ALTER TABLE companies
    ADD COLUMN plan_id bigint NOT NULL DEFAULT default_plan_id() REFERENCES plans (id) ON DELETE RESTRICT,
    ADD COLUMN recurrence text NOT NULL DEFAULT 'MENSAL'
        CHECK (recurrence IN ('MENSAL', 'BIMESTRAL', 'TRIMESTRAL', 'SEMESTRAL', 'ANUAL'));
CREATE INDEX companies_plan_idx ON companies (plan_id);

-- Invoices: one per company and due date (the daily sweep creates them ahead of the due date, and may run
-- twice), from the plan's value. Marking one paid moves the company's due date by its recurrence.
CREATE TABLE invoices (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    company_id  bigint NOT NULL REFERENCES companies (id) ON DELETE CASCADE,
    detail      text NOT NULL DEFAULT '' CHECK (length(detail) <= 255),
    status      text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'paid', 'cancelled')),
    value       numeric(12, 2) NOT NULL CHECK (value >= 0),
    due_date    date NOT NULL,
    paid_at     timestamptz,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (company_id, due_date)
);
CREATE INDEX invoices_company_idx ON invoices (company_id, id);
