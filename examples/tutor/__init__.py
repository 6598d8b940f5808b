"""The tutor: the platform's demo agent (`make up` talks to it), recorded with
`turnlog.record`. Offline providers by default, so it runs with no key and no network."""
