SECRET=hunter2
API_URL=https://example.invalid/v1
