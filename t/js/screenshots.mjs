// t/js/screenshots.mjs: pictures of the chat page for the README, taken
// in Debian's Chromium against a stack scripts/screenshots started and
// filled. Reads {url, token, conversation, out} on stdin; writes
// OUT/page-{desktop,phone}-{light,dark}.png and OUT/page-sign-in.png.
import { readFileSync, mkdtempSync, rmSync } from "node:fs";
import puppeteer from "puppeteer-core";

const cfg = JSON.parse(readFileSync(0, "utf8"));
const userDataDir = mkdtempSync("/tmp/todo-chat-shots-");
const browser = await puppeteer.launch({
	executablePath: "/usr/bin/chromium",
	headless: true,
	userDataDir,
	args: process.getuid() === 0 ? ["--no-sandbox"] : [],
});
try {
	const page = await browser.newPage();
	const sizes = { desktop: { width: 1200, height: 720 },
	    phone: { width: 390, height: 760, isMobile: true, hasTouch: true } };
	for (const [size, viewport] of Object.entries(sizes)) {
		for (const scheme of ["light", "dark"]) {
			await page.setViewport(viewport);
			await page.emulateMediaFeatures([{ name: "prefers-color-scheme",
			    value: scheme }]);
			await page.goto(`${cfg.url}/#token=${cfg.token}`,
			    { waitUntil: "load" });
			await page.evaluate((id) => sessionStorage.setItem(
			    "todo-chat.open", String(id)), cfg.conversation);
			await page.reload({ waitUntil: "load" });
			await page.waitForFunction(() => document.querySelectorAll(
			    ".msg.assistant").length > 0 && document.querySelectorAll(
			    "#pending .task").length > 0, { timeout: 15000 });
			await page.evaluate(() => document.activeElement.blur());
			await page.screenshot({ path: `${cfg.out}/page-${size}-${scheme}.png` });
		}
	}
	await page.setViewport(sizes.desktop);
	await page.emulateMediaFeatures([{ name: "prefers-color-scheme", value: "light" }]);
	await page.evaluate(() => localStorage.clear());
	await page.reload({ waitUntil: "load" });
	await page.waitForFunction(() => !document.getElementById("sign-in").hidden,
	    { timeout: 15000 });
	await page.screenshot({ path: `${cfg.out}/page-sign-in.png`,
	    clip: { x: 0, y: 0, width: 1200, height: 420 } });
} finally {
	await browser.close();
	rmSync(userDataDir, { recursive: true, force: true });
}
