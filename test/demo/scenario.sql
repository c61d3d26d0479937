CREATE EXTENSION plantsync; SELECT 'demo placeholder';
