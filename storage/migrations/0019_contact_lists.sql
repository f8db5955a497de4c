-- Version 19 (issue 13, points 5 and 6): contact lists with their items, and contacts' custom fields
-- searchable.
--
-- A contact list is a named set of numbers a company keeps apart from its contacts (ticketz's ContactLists
-- and ContactListItems: the campaigns send to them). An item's number is stored as the contacts' are:
-- E.164 digits without the "+" ("5511988887777"), unique within its list, so an import merges a number it
-- meets again. `is_whatsapp_valid` is null until the number was checked on WhatsApp (actors/number_check.py).

CREATE TABLE contact_lists (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    company_id  bigint NOT NULL REFERENCES companies (id) ON DELETE CASCADE,
    name        text NOT NULL CHECK (length(name) BETWEEN 1 AND 255),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (company_id, id)
);
CREATE INDEX contact_lists_company_name_idx ON contact_lists (company_id, lower(name), id);

-- The company is repeated so that the foreign key holds it: an item can never join another company's list.
CREATE TABLE contact_list_items (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    company_id        bigint NOT NULL,
    contact_list_id   bigint NOT NULL,
    name              text NOT NULL DEFAULT '' CHECK (length(name) <= 255),
    number            text NOT NULL CHECK (number ~ '^[0-9]{6,20}$'),
    email             text NOT NULL DEFAULT '' CHECK (length(email) <= 255),
    is_whatsapp_valid boolean,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (company_id, contact_list_id) REFERENCES contact_lists (company_id, id) ON DELETE CASCADE,
    UNIQUE (contact_list_id, number)
);
-- A list's page (by name) and its count.
CREATE INDEX contact_list_items_list_name_idx ON contact_list_items (contact_list_id, lower(name), id);
-- The numbers still to check on WhatsApp, oldest first.
CREATE INDEX contact_list_items_unchecked_idx ON contact_list_items (contact_list_id, id)
    WHERE is_whatsapp_valid IS NULL;

-- The contacts' search also finds a contact by the value of a custom field ("Ouro" finds the contacts whose
-- field "Plano" is "Ouro"). The three-character pieces of the lowered value (search_grams, version 3) narrow
-- a search of 3 characters or more to the fields that may contain it, whatever the number of companies; a
-- shorter one reads the company's fields through the second index.
CREATE INDEX contact_custom_fields_value_grams_idx ON contact_custom_fields USING gin (search_grams(lower(value)));
CREATE INDEX contact_custom_fields_company_idx ON contact_custom_fields (company_id, contact_id);
