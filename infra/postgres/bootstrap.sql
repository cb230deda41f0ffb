-- One database for the platform; each service creates and owns its own schema at first start
-- (or when `earlyhelp migrate` runs). Run as a superuser once per environment.
CREATE ROLE earlyhelp LOGIN;  -- set its password out of band: \password earlyhelp
CREATE DATABASE earlyhelp OWNER earlyhelp;
