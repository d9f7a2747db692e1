// Entry point: creates the app-lifetime objects (live connection, fleet
// chart series, router) and mounts the Svelte app.
import { mount } from 'svelte';
import App from './App.svelte';
import { LiveClient } from './lib/live.svelte.ts';
import { Router } from './lib/router.svelte.ts';
import { FleetTrends } from './lib/trends.ts';
import './app.css';

const live = new LiveClient();
const trends = new FleetTrends(live);
const router = new Router();
live.start();

const target = document.getElementById('app');
if (!target) throw new Error('index.html has no #app');
mount(App, { target, props: { live, trends, router } });
